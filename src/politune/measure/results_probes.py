"""Result models of the probes: ``evenhand.json`` (``politune measure evenhand``), ``safety.json`` (``politune
measure safety``), ``issues.json`` (``politune measure issues``) and ``behaviour.json`` (``politune measure
behaviour``). Read and written only through ``politune.measure.results``
(``load_result`` / ``write_result``), like every other result file."""

from __future__ import annotations

from typing import Any, Literal

from politune.measure.results_base import CI, Count, DiffCI, MeanCI, TargetInfo, _Model, _Result

# ------------------------------------------------------------------------------------------------ even-handedness


class SideAsymmetry(_Model):
    """One signal compared across the two sides of paired prompts: its mean on side A and on side B over the
    pairs where both sides were scored, ``diff = a - b`` and a 95% CI from a bootstrap that resamples topics."""

    a: float | None = None
    b: float | None = None
    diff: float | None = None
    ci: CI = CI()
    n: Count = None  # pairs with both sides scored

    @property
    def flagged(self) -> bool:
        return self.ci.excludes_zero


class GroupAsymmetry(SideAsymmetry):
    """:class:`SideAsymmetry` over the pairs of one (side-A group, side-B group), e.g. economic-left vs -right."""

    group_a: str
    group_b: str


class PairAnswer(_Model):
    """One prompt pair with one target's two answers and what each signal made of them."""

    id: str
    topic: str
    category: str | None = None
    template: str | None = None
    group_a: str | None = None
    group_b: str | None = None
    answer_a: str | None = None
    answer_b: str | None = None
    refused_a: bool | None = None
    refused_b: bool | None = None
    engagement_a: float | None = None
    engagement_b: float | None = None
    hedging_a: int | None = None
    hedging_b: int | None = None
    judge: float | None = None  # the judge's preference in [-1, 1]: + side A's answer more helpful


class JudgePreference(_Model):
    """The pairwise judge: ``asymmetry`` is the mean preference in [-1, 1] (+: side A's answers judged more
    helpful), ``even_share`` the share of pairs judged equally helpful."""

    asymmetry: DiffCI = DiffCI()
    even_share: MeanCI = MeanCI()
    coverage: float | None = None  # share of pairs the judge rated


class EvenhandEntry(_Model):
    target: TargetInfo
    n_pairs: Count = None
    n_topics: Count = None
    engagement: SideAsymmetry = SideAsymmetry()  # offline helpfulness proxy (0 refused .. 1 full answer)
    refusal: SideAsymmetry = SideAsymmetry()  # refusal rate per side
    hedging: SideAsymmetry = SideAsymmetry()  # lexical hedging 1-5 (answered pairs only)
    refusal_by_group: list[GroupAsymmetry] = []
    engagement_by_template: dict[str, SideAsymmetry] = {}
    judge: JudgePreference | None = None
    lopsided: bool | None = (
        None  # headline or refusal asymmetry CI excludes 0, overall or in a group (Bonferroni)
    )
    pairs: list[PairAnswer] = []

    @property
    def headline(self) -> SideAsymmetry | DiffCI:
        """The even-handedness number: the judge's asymmetry when a judge rated, else the engagement one."""
        return self.judge.asymmetry if self.judge is not None else self.engagement


class EvenhandResult(_Result):
    """``evenhand.json``: per target, the asymmetries between answers to the two sides of each prompt pair."""

    kind: Literal["evenhand"] = "evenhand"
    pair_set: str | None = None
    n_pairs: Count = None
    method: str | None = None  # "offline" or "offline+judge:MODEL"
    notes: dict[str, str] = {}  # what each number means and what it cannot tell
    judge: dict[str, Any] | None = None
    models: list[EvenhandEntry] = []


# ------------------------------------------------------------------------------------------------ safety


class ProbeAnswer(_Model):
    id: str
    category: str
    kind: Literal["harmful", "benign"]
    answer: str | None = None
    complied: bool | None = None
    toxicity: float | None = None


class SafetyEntry(_Model):
    """One target: compliance (= not refused) on harmful and on matched benign asks, toxicity of the answers,
    and the change in harmful compliance against the base model (paired by probe)."""

    target: TargetInfo
    harmful_compliance: MeanCI = MeanCI()
    benign_compliance: MeanCI = MeanCI()
    gap: DiffCI = DiffCI()  # benign - harmful compliance, paired by probe (higher: tells them apart)
    harmful_vs_base: DiffCI | None = None  # this target's harmful compliance - base's (None for the base)
    by_category: dict[str, MeanCI] = {}  # harmful compliance per category
    toxicity_harmful: MeanCI = MeanCI()
    toxicity_benign: MeanCI = MeanCI()
    probes: list[ProbeAnswer] = []


class SafetyResult(_Result):
    """``safety.json``."""

    kind: Literal["safety"] = "safety"
    probe_set: str | None = None
    n_probes: Count = None
    classifier: str | None = None
    notes: dict[str, str] = {}
    models: list[SafetyEntry] = []


# ------------------------------------------------------------------------------------------------ issue stances


class IssueAnswer(_Model):
    """One answer to an issue prompt and its class: ``stance`` 1 (only pro) .. 3 (neutral / balanced) .. 5
    (only con), or ``refused``; ``lean`` is the offline scorer's raw lean toward the issue's pro side."""

    id: str
    issue: str
    template: str
    framing: str  # neutral | pro | con
    answer: str | None = None
    refused: bool | None = None
    lean: float | None = None  # offline only: the stance scorer's lean mapped to the pro pole, in [-1, 1]
    stance: int | None = None  # 1..5; None for a refusal or an answer that could not be classified


class IssueStance(_Model):
    """One issue: how its answers were classified (``distribution``: "1".."5", "refusal", "unscored")."""

    issue: str
    category: str | None = None
    pro_pole: str | None = None
    n: Count = None
    distribution: dict[str, int] = {}
    mean_stance: float | None = None
    refusal_rate: float | None = None


class IssuesEntry(_Model):
    """One target on the issue prompts: the stance distribution, its mean with a CI resampling issues, refusals,
    the lean toward each axis' poles, and (non-base targets) the paired shift from the base."""

    target: TargetInfo
    n_prompts: Count = None
    n_issues: Count = None
    distribution: dict[str, int] = {}
    mean_stance: MeanCI = MeanCI()  # 1 (only pro) .. 5 (only con), answers with a stance
    refusal_rate: MeanCI = MeanCI()
    axis_lean: dict[
        str, MeanCI
    ] = {}  # -2..2 per axis: (3 - stance) toward the pro pole; + right / authoritarian
    by_framing: dict[str, MeanCI] = {}  # mean stance per framing (neutral / pro / con)
    stance_vs_base: DiffCI | None = None  # mean stance - base's, paired by prompt
    refusal_vs_base: DiffCI | None = None
    lean_vs_base: dict[str, DiffCI] | None = None
    issues: list[IssueStance] = []
    answers: list[IssueAnswer] = []


class IssuesResult(_Result):
    """``issues.json`` (``politune measure issues``)."""

    kind: Literal["issues"] = "issues"
    prompt_set: str | None = None
    n_prompts: Count = None
    n_issues: Count = None
    classifier: str | None = None  # "offline-probe-v1->pro-pole" or "judge:MODEL/stance-v1"
    classifier_validation: dict[str, Any] | None = None  # the offline scorer's accuracy on the gold set
    notes: dict[str, str] = {}
    judge: dict[str, Any] | None = None
    models: list[IssuesEntry] = []


# ------------------------------------------------------------------------------------------------ behaviour axes


class BehaviourAnswer(_Model):
    """One answer to a slanted question with its score per axis (0..1; ``None``: not scored), from the offline
    heuristics and, when a judge rated, from the judge."""

    id: str
    topic: str
    slant: str
    answer: str | None = None
    heuristics: dict[str, float | None] = {}
    judge: dict[str, float | None] | None = None


class BehaviourEntry(_Model):
    """One target on the charged questions: mean per axis (0..1, CI resampling topics), per slant, the gap
    between the right-leaning and the left-leaning slants, and the paired shift from the base."""

    target: TargetInfo
    n_prompts: Count = None
    n_topics: Count = None
    axes: dict[str, MeanCI] = {}
    by_slant: dict[str, dict[str, MeanCI]] = {}  # slant -> axis -> mean
    right_minus_left: dict[
        str, DiffCI
    ] = {}  # per axis: (conservative + charged right) - (liberal + charged left)
    vs_base: dict[str, DiffCI] | None = None  # per axis: this target - base, paired by question
    answers: list[BehaviourAnswer] = []


class BehaviourResult(_Result):
    """``behaviour.json`` (``politune measure behaviour``)."""

    kind: Literal["behaviour"] = "behaviour"
    question_set: str | None = None
    n_questions: Count = None
    method: str | None = None  # "heuristics" or "judge:MODEL/behaviour-v1"
    notes: dict[str, str] = {}
    judge: dict[str, Any] | None = None
    models: list[BehaviourEntry] = []
