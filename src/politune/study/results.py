"""The results table of a study: one typed :class:`ModelRow` per (cell, model), read from the result files of
docs/results.md through ``politune.measure.results``; flattened to columns only for results.csv / results.md."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.fsutil import atomic_write_text
from politune.measure.results import (
    AXES,
    CI,
    BehaviourResult,
    CompassResult,
    EvenhandResult,
    IssuesResult,
    QualityResult,
    RefusalResult,
    Result,
    ResultT,
    RewardAccuracyResult,
    SafetyResult,
    TopicsResult,
    ToxicityResult,
    WinrateResult,
    parse_result_as,
    read_json,
)
from politune.measure.validate_judge import stance_judge


@dataclass
class Position:
    """One track x axis: the score with its CI and, for a non-base model, the paired shift from the base."""

    score: float
    ci: CI
    shift: float | None = None
    shift_ci: CI = field(default_factory=CI)


@dataclass
class ModelRow:
    cell: str
    assignment: dict[str, Any]  # the sweep values of the cell
    model: str
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)  # (track, axis) -> position
    topics_mean: float | None = None
    rouge_l: float | None = None
    rouge_l_delta: float | None = None
    perplexity: float | None = None
    toxicity_mean: float | None = None
    toxicity_share_above: float | None = None
    refusal_rate: float | None = None
    # evenhand.*, safety.*, issues.*, behaviour.* columns (probe_columns)
    probes: dict[str, float | None] = field(default_factory=dict)
    judge: str | None = None  # what read the open track's answers (else the topic lean's scorer)
    judge_validation: dict[str, Any] | None = None  # its accuracy on the blind gold set (validate_judge)
    topic_judge: str | None = None  # the stance scorer behind the topic lean
    topic_judge_validation: dict[str, Any] | None = None
    winrate_vs_base: dict[str, tuple[float | None, CI]] = field(
        default_factory=dict
    )  # community -> (rate, CI)
    reward_accuracy: float | None = None
    reward_accuracy_ci: CI = field(default_factory=CI)
    reward_margin: float | None = None

    @property
    def judge_accuracy(self) -> dict[str, float | None]:
        """Axis -> the judge's sign accuracy on the gold set's test half (empty when never validated)."""
        return _accuracy(self.judge_validation)

    @property
    def topic_judge_accuracy(self) -> dict[str, float | None]:
        return _accuracy(self.topic_judge_validation) if self.topic_judge != self.judge else {}

    def flat(self) -> dict[str, Any]:
        """The CSV / Markdown row (columns as in earlier versions: ``logprob.economic.ci`` = "[lo, hi]")."""
        row: dict[str, Any] = {
            "cell": self.cell,
            **{k.split(".")[-1]: v for k, v in self.assignment.items()},
            "model": self.model,
        }
        if self.judge:
            row["judge"] = self.judge
        if self.topic_judge and self.topic_judge != self.judge:
            row["topic_judge"] = self.topic_judge
        for (track, axis), p in self.positions.items():
            row[f"{track}.{axis}"] = _fmt(p.score)
            row[f"{track}.{axis}.ci"] = p.ci.fmt()
            if p.shift is not None:
                row[f"{track}.{axis}.shift"] = _fmt(p.shift)
                row[f"{track}.{axis}.shift.ci"] = p.shift_ci.fmt()
        for key, value in (
            ("topics.mean", self.topics_mean),
            ("rouge_l", self.rouge_l),
            ("perplexity", self.perplexity),
            ("rouge_l.delta", self.rouge_l_delta),
            ("toxicity.mean", self.toxicity_mean),
            ("toxicity.share_above", self.toxicity_share_above),
            ("refusal.rate", self.refusal_rate),
            *self.probes.items(),
            *((f"judge.sign_accuracy.{a}", v) for a, v in self.judge_accuracy.items()),
            *((f"topic_judge.sign_accuracy.{a}", v) for a, v in self.topic_judge_accuracy.items()),
            ("reward_accuracy", self.reward_accuracy),
            ("reward_margin", self.reward_margin),
        ):
            if value is not None:
                row[key] = _fmt(value)
        if self.reward_accuracy is not None:
            row["reward_accuracy.ci"] = self.reward_accuracy_ci.fmt()
        for community, (rate, rate_ci) in self.winrate_vs_base.items():
            row[f"winrate.vs_base[{community}]"] = _fmt(rate)
            row[f"winrate.vs_base[{community}].ci"] = rate_ci.fmt()
        return row


def _fmt(x: Any) -> Any:
    return round(x, 4) if isinstance(x, float) and not math.isnan(x) else x


# the probe measures' result files, read into ModelRow.probes by :func:`probe_columns`
PROBE_RESULTS: dict[str, type[Result]] = {
    "evenhand": EvenhandResult,
    "safety": SafetyResult,
    "issues": IssuesResult,
    "behaviour": BehaviourResult,
}


def probe_columns(name: str, docs: dict[str, Any]) -> dict[str, float | None]:
    """One model's probe columns from ``docs`` (kind -> {model name: entry}): even-handedness (side A - B
    engagement and refusal, lopsided 1/0), safety (harmful / benign compliance, harmful vs base), issue stance
    (mean stance, refusal, lean per axis) and the behaviour axes, with the shift from the base where there is one."""
    out: dict[str, float | None] = {}
    if (ev := docs.get("evenhand", {}).get(name)) is not None:
        out["evenhand.engagement"] = ev.engagement.diff
        out["evenhand.refusal"] = ev.refusal.diff
        out["evenhand.lopsided"] = None if ev.lopsided is None else float(ev.lopsided)
    if (sa := docs.get("safety", {}).get(name)) is not None:
        out["safety.harmful_compliance"] = sa.harmful_compliance.mean
        out["safety.benign_compliance"] = sa.benign_compliance.mean
        if sa.harmful_vs_base is not None:
            out["safety.harmful_vs_base"] = sa.harmful_vs_base.diff
    if (issues := docs.get("issues", {}).get(name)) is not None:
        out["issues.stance"] = issues.mean_stance.mean
        out["issues.refusal"] = issues.refusal_rate.mean
        for axis, m in issues.axis_lean.items():
            out[f"issues.lean.{axis}"] = m.mean
            if issues.lean_vs_base is not None and axis in issues.lean_vs_base:
                out[f"issues.lean.{axis}.shift"] = issues.lean_vs_base[axis].diff
    if (behaviour := docs.get("behaviour", {}).get(name)) is not None:
        for axis, m in behaviour.axes.items():
            out[f"behaviour.{axis}"] = m.mean
            if behaviour.vs_base is not None and axis in behaviour.vs_base:
                out[f"behaviour.{axis}.shift"] = behaviour.vs_base[axis].diff
    return out


def _load(path: Path, cls: type[ResultT]) -> ResultT | None:
    return parse_result_as(read_json(path), cls, str(path)) if path.is_file() else None


def _by_name(result: Result | None) -> dict[str, Any]:
    """A result's entries by target name (none where the result file is absent)."""
    return {m.target.name: m for m in result.models} if result is not None else {}


def model_rows(
    cell_dir: Path, cell: str = "main", assignment: dict[str, Any] | None = None
) -> list[ModelRow]:
    """Rows for one cell (or one plain run folder): each model's positions, shifts and side-effects."""
    mdir = cell_dir / "measure"
    compass = _load(mdir / "compass.json", CompassResult)
    topics = _load(mdir / "topics.json", TopicsResult)
    quality = _load(mdir / "quality.json", QualityResult)
    toxicity = _load(mdir / "toxicity.json", ToxicityResult)
    refusal = _load(mdir / "refusal.json", RefusalResult)
    winrate = _load(mdir / "winrate.json", WinrateResult)
    rewards = _load(mdir / "reward_accuracy.json", RewardAccuracyResult)
    probes = {k: _by_name(_load(mdir / f"{k}.json", cls)) for k, cls in PROBE_RESULTS.items()}
    positions, tps, qs = _by_name(compass), _by_name(topics), _by_name(quality)
    tox, ref = _by_name(toxicity), _by_name(refusal)
    comps = {(c.b, c.track, c.axis): c for c in (compass.comparisons if compass else []) if c.a == "base"}
    in_probes = list(dict.fromkeys(n for d in probes.values() for n in d))
    names = list(positions) or list(tps) or list(qs) or in_probes or list(_by_name(winrate))
    judged = compass if compass is not None and compass.settings.get("scorer") else topics
    judge, validation = stance_judge(judged) if judged is not None else (None, None)
    topic_judge, topic_validation = stance_judge(topics) if topics is not None else (None, None)
    rows = []
    for name in names:
        row = ModelRow(
            cell,
            dict(assignment or {}),
            name,
            judge=judge,
            judge_validation=validation,
            topic_judge=topic_judge,
            topic_judge_validation=topic_validation,
        )
        entry = positions.get(name)
        for track, res in entry.tracks.items() if entry else []:
            for axis in AXES:
                ax = res.axis(axis)
                if ax is None or ax.score is None:
                    continue
                p = Position(ax.score, ax.ci)
                c = comps.get((name, track, axis))
                if c is not None:
                    p.shift, p.shift_ci = c.diff, c.ci
                row.positions[(track, axis)] = p
        if name in tps:
            row.topics_mean = tps[name].mean
        if name in qs:
            q = qs[name]
            row.rouge_l = q.rouge_l.mean if q.rouge_l else None
            row.perplexity = q.perplexity.mean if q.perplexity else None
            d = q.delta_vs_base.rouge_l if q.delta_vs_base else None
            row.rouge_l_delta = d.diff if d is not None else None
        if name in tox:
            row.toxicity_mean, row.toxicity_share_above = tox[name].mean, tox[name].share_above
        if name in ref:
            row.refusal_rate = ref[name].rate
        _compred_columns(row, winrate, rewards)
        row.probes = probe_columns(name, probes)
        rows.append(row)
    return rows


def _compred_columns(
    row: ModelRow, winrate: WinrateResult | None, rewards: RewardAccuracyResult | None
) -> None:
    """The row's win-rate against the base (per community) and its adapter's reward accuracy, when measured."""
    for c in winrate.comparisons if winrate is not None else []:
        if c.a == row.model and c.b == "base":
            row.winrate_vs_base[c.community] = (c.win_rate.mean, c.win_rate.ci)
    entry = next((m for m in (rewards.models if rewards else []) if m.target.name == row.model), None)
    if entry is not None:
        row.reward_accuracy, row.reward_accuracy_ci = entry.accuracy.mean, entry.accuracy.ci
        row.reward_margin = entry.margin.mean


def collect_rows(cells: list[tuple[str, dict[str, Any], Path]]) -> list[ModelRow]:
    return [r for name, assignment, cell_dir in cells for r in model_rows(cell_dir, name, assignment)]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def to_markdown(rows: list[ModelRow]) -> str:
    if not rows:
        return "_no results_\n"
    flat = [r.flat() for r in rows]
    cols = _columns(flat)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in flat]
    return "\n".join(lines) + "\n"


def write_results(rows: list[ModelRow], study_dir: Path) -> None:
    flat = [r.flat() for r in rows]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_columns(flat))
    w.writeheader()
    w.writerows(flat)
    atomic_write_text(study_dir / "results.csv", buf.getvalue())
    atomic_write_text(study_dir / "results.md", to_markdown(rows))


def _accuracy(validation: dict[str, Any] | None) -> dict[str, float | None]:
    """Axis -> sign accuracy on the gold set's test half (empty when never validated)."""
    return {a: v["sign_accuracy"]["value"] for a, v in (validation or {}).get("axes", {}).items()}
