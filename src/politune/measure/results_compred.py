"""Result models of the ComPreD-style measures: ``winrate.json`` (``politune measure winrate``: which answer a
named community would prefer, model A vs model B) and ``reward_accuracy.json`` (``politune measure
reward-accuracy``: a DPO adapter's implicit reward on held-out preference pairs). Read and written only through
``politune.measure.results`` (``load_result`` / ``write_result``), like every other result file."""

from __future__ import annotations

from typing import Any, Literal

from politune.measure.results_base import Count, MeanCI, TargetInfo, _Model, _Result

# ------------------------------------------------------------------------------------------------ win-rate


class PromptAnswer(_Model):
    id: str
    answer: str | None = None


class WinrateEntry(_Model):
    """One target's answers to the prompts (the comparisons read them by prompt id)."""

    target: TargetInfo
    n_prompts: Count = None
    answers: list[PromptAnswer] = []


class WinrateVerdict(_Model):
    """One prompt of one comparison: which model's answer was shown first (seeded random order), what the judge
    chose, and what that means for model A."""

    id: str
    topic: str | None = None
    axis: str | None = None
    first: Literal["a", "b"]  # whose answer the judge saw in slot 1
    choice: Literal["first", "second", "tie"] | None = (
        None  # the judge's verdict on the slots; None: no verdict
    )
    winner: Literal["a", "b", "tie"] | None = None
    score: float | None = None  # for model A: 1 win, 0.5 tie, 0 loss
    lean_first: float | None = None  # offline judge only: the stance scorer's lean of each slot's answer
    lean_second: float | None = None
    error: str | None = None  # why there is no verdict


class WinrateComparison(_Model):
    """Model ``a`` vs model ``b`` as judged for one community: ``win_rate`` is A's mean score (win 1, tie 0.5,
    loss 0) with a 95% CI over prompts; ``first_slot`` the share of decisive verdicts that picked the answer shown
    first (0.5 when the judge has no position bias; the order is random per prompt), tested exactly against 0.5."""

    a: str
    b: str
    community: str  # as the judge was told, e.g. "a left-leaning reader" or "r/economics readers"
    pole: Literal["left", "right"] | None = None  # the community's side (the offline judge needs it)
    win_rate: MeanCI = MeanCI()
    wins: int = 0
    ties: int = 0
    losses: int = 0
    coverage: float | None = None  # share of prompts with a verdict
    first_slot: MeanCI = MeanCI()
    first_slot_p: float | None = None  # exact two-sided sign test of the first-slot count against 0.5
    position_bias: bool | None = None  # first_slot_p < 0.05
    by_axis: dict[str, MeanCI] = {}
    verdicts: list[WinrateVerdict] = []

    @property
    def tie_share(self) -> float | None:
        n = self.wins + self.ties + self.losses
        return self.ties / n if n else None


class WinrateResult(_Result):
    """``winrate.json``: every target's answers and the pairwise comparisons."""

    kind: Literal["winrate"] = "winrate"
    prompt_set: str | None = None
    n_prompts: Count = None
    method: str | None = None  # "offline:<scorer> margin=M" or "judge:MODEL"
    scorer_validation: dict[str, Any] | None = None  # the offline scorer's accuracy on the blind gold set
    judge: dict[str, Any] | None = None
    notes: dict[str, str] = {}
    models: list[WinrateEntry] = []
    comparisons: list[WinrateComparison] = []


# ------------------------------------------------------------------------------------------------ reward accuracy


class PairReward(_Model):
    """One held-out pair: summed log-probs of each answer under the adapter (policy) and the base (reference),
    and the implicit rewards ``beta * (policy - reference)``."""

    id: str
    groups: dict[str, str] = {}  # field -> value (community / axis / topic), as the pair file has them
    logp_chosen: float | None = None
    logp_rejected: float | None = None
    ref_logp_chosen: float | None = None
    ref_logp_rejected: float | None = None
    reward_chosen: float | None = None
    reward_rejected: float | None = None
    margin: float | None = None  # reward_chosen - reward_rejected


class RewardGroup(_Model):
    accuracy: MeanCI = MeanCI()  # share of pairs with reward_chosen > reward_rejected
    margin: MeanCI = MeanCI()  # mean reward_chosen - reward_rejected


class RewardAccuracyEntry(RewardGroup):
    """One adapter on its held-out pairs; ``by`` splits them by each subset field the pairs carry."""

    target: TargetInfo
    pairs_source: str | None = None  # e.g. builtin:right:heldout
    stance: str | None = None
    beta: float | None = None
    by: dict[str, dict[str, RewardGroup]] = {}
    pairs: list[PairReward] = []


class RewardAccuracyResult(_Result):
    """``reward_accuracy.json``."""

    kind: Literal["reward_accuracy"] = "reward_accuracy"
    reference: str | None = None  # what the reward is relative to ("base model (adapter disabled)")
    notes: dict[str, str] = {}
    models: list[RewardAccuracyEntry] = []
