"""The report's views of the results: one small dataclass per thing a chart or table shows (a compass model and
its tracks, a topics model, a tuning run), the whole :class:`ReportData`, and the readers that build them from
the typed result files and run folders."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.fsutil import read_jsonl_log, sha256_dir
from politune.measure.results import (
    CI,
    BehaviourEntry,
    Comparison,
    CompassResult,
    EvenhandEntry,
    IssuesEntry,
    QualityEntry,
    RefusalEntry,
    RewardAccuracyEntry,
    SafetyEntry,
    TargetInfo,
    TopicAnswer,
    TopicsResult,
    ToxicityEntry,
    WinrateComparison,
    parse_result_as,
)


@dataclass(frozen=True)
class Estimate:
    """A point value and its 95% CI (``None`` when the writer gave none)."""

    value: float | None
    ci: tuple[float, float] | None = None

    def error_bar(self) -> list[list[float]] | None:
        """matplotlib's asymmetric ``xerr`` / ``yerr``, ``[[value - lo], [hi - value]]``; None without a CI."""
        if self.value is None or self.ci is None:
            return None
        return [[self.value - self.ci[0]], [self.ci[1] - self.value]]


@dataclass
class CompassTrack:
    economic: Estimate
    social: Estimate
    coverage: float | None = None  # smallest coverage of the two axes
    n: int | None = None
    refusal_rate: float | None = None
    content_sensitivity: float | None = None

    def point(self) -> tuple[float, float] | None:
        """``(economic, social)`` when both axes have a score."""
        e, s = self.economic.value, self.social.value
        return None if e is None or s is None else (e, s)


@dataclass
class CompassModel:
    name: str
    target: TargetInfo
    tracks: dict[str, CompassTrack]
    diagnostics: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    source: Path | None = None

    @property
    def role(self) -> str:
        return self.target.role


@dataclass
class TopicsModel:
    name: str
    target: TargetInfo
    scorer: str
    mean: Estimate
    axis_means: dict[str, Estimate]
    questions: list[TopicAnswer]
    source: Path | None = None


@dataclass
class TuneRun:
    """A tuning run folder: any folder holding summary.json (kind tune), trajectory.jsonl or metrics.jsonl."""

    name: str
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # [{"step": int, "metrics": {...}}]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config_text: str | None = None
    card_text: str | None = None
    adapter_hash: str | None = None

    @property
    def stance(self) -> str | None:
        return self.summary.get("stance")


@dataclass
class SourceFile:
    path: Path
    kind: str
    provenance: dict[str, Any]


@dataclass
class ReportData:
    run_dirs: list[Path]
    sources: list[SourceFile] = field(default_factory=list)
    compass: list[CompassModel] = field(default_factory=list)
    compass_settings: dict[str, Any] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    topics: list[TopicsModel] = field(default_factory=list)
    quality: dict[str, QualityEntry] = field(default_factory=dict)  # model name -> entry
    toxicity: dict[str, ToxicityEntry] = field(default_factory=dict)
    toxicity_threshold: float | None = None
    refusal: dict[str, RefusalEntry] = field(default_factory=dict)
    evenhand: dict[str, EvenhandEntry] = field(default_factory=dict)
    safety: dict[str, SafetyEntry] = field(default_factory=dict)
    winrate: list[WinrateComparison] = field(default_factory=list)  # model names qualified like the others
    reward_accuracy: dict[str, RewardAccuracyEntry] = field(default_factory=dict)
    issues: dict[str, IssuesEntry] = field(default_factory=dict)
    behaviour: dict[str, BehaviourEntry] = field(default_factory=dict)
    runs: list[TuneRun] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # display path -> resolved config.yaml text
    # model name -> Target dict
    targets: dict[str, TargetInfo] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def model_names(self) -> list[str]:
        """Every model seen, base(s) first, then adapters, then personas, each group in first-seen order."""
        order = {"base": 0, "adapter": 1, "persona": 2}
        names = list(self.targets)
        return sorted(names, key=lambda n: (order.get(self.targets[n].role, 3), names.index(n)))

    def is_empty(self) -> bool:
        side = bool(self.quality or self.toxicity or self.refusal or self.evenhand or self.safety)
        side = side or bool(self.issues or self.behaviour)
        compred = self.winrate or self.reward_accuracy
        return not (self.compass or self.topics or side or compred or self.runs)


# ---------------------------------------------------------------------------------------------------------
# small tolerant readers


def num(x: Any) -> float | None:
    """A finite float, or None (for None, NaN, strings, bools...)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def sub_dict(d: dict[str, Any], key: str) -> dict[str, Any]:
    """``d[key]`` when it is a JSON object, else an empty dict."""
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def ci_of(x: Any) -> tuple[float, float] | None:
    if isinstance(x, list | tuple) and len(x) == 2:
        lo, hi = num(x[0]), num(x[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    return None


def estimate(d: Any, *keys: str) -> Estimate:
    """``{"score": 1.0, "ci": [..]}`` / ``{"mean": ...}`` / ``{"diff": ...}`` / ``{"rate": ...}`` / a bare number."""
    if isinstance(d, dict):
        for k in keys or ("score", "mean", "value", "diff", "rate"):
            if k in d:
                return Estimate(num(d[k]), ci_of(d.get("ci")))
        return Estimate(None, ci_of(d.get("ci")))
    return Estimate(num(d), None)


def _estimate(value: float | None, ci: CI | None) -> Estimate:
    return Estimate(value, ci.bounds if ci is not None else None)


# ---------------------------------------------------------------------------------------------------------
# per-kind views of the typed results


def parse_compass(doc: dict[str, Any] | CompassResult, path: Path | None = None) -> list[CompassModel]:
    res = parse_result_as(doc, CompassResult, str(path or "compass.json"))
    out = []
    for m in res.models:
        tracks = {}
        for track, td in m.tracks.items():
            axes = [a for a in (td.economic, td.social) if a is not None]
            covs = [a.coverage for a in axes if a.coverage is not None]
            ns = [a.n for a in axes if a.n is not None]
            tracks[track] = CompassTrack(
                economic=_estimate(td.economic.score, td.economic.ci) if td.economic else Estimate(None),
                social=_estimate(td.social.score, td.social.ci) if td.social else Estimate(None),
                coverage=min(covs) if covs else None,
                n=min(ns) if ns else None,
                refusal_rate=td.refusal_rate,
                content_sensitivity=td.content_sensitivity,
            )
        agree = {k: v for k, v in m.agreement.items() if v is not None}
        out.append(
            CompassModel(m.target.name, m.target.model_copy(), tracks, m.diagnostics.values(), agree, path)
        )
    return out


def parse_topics(doc: dict[str, Any] | TopicsResult, path: Path | None = None) -> list[TopicsModel]:
    res = parse_result_as(doc, TopicsResult, str(path or "topics.json"))
    out = []
    for m in res.models:
        mean = _estimate(m.mean, m.ci)
        if (
            mean.value is None and m.questions
        ):  # writer gave no mean: the plain mean of scored questions, no CI
            scored = [q.score for q in m.questions if q.score is not None]
            mean = Estimate(sum(scored) / len(scored) if scored else None, None)
        am = {k: _estimate(v.mean, v.ci) for k, v in m.axis_means.items()}
        out.append(
            TopicsModel(
                m.target.name, m.target.model_copy(), res.scorer_name, mean, am, list(m.questions), path
            )
        )
    return out


def _read_text(path: Path, limit: int = 200_000) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit] if path.is_file() else None
    except OSError:
        return None


def read_trajectory(path: Path) -> list[dict[str, Any]]:
    """trajectory.jsonl -> rows ``{"step": int, "metrics": {name: float}}`` sorted by step; rows without a step
    or metrics are skipped, a torn last line (run killed mid-write) too. A flat row (metrics at the top level)
    is accepted."""
    rows: list[dict[str, Any]] = []
    for r in read_jsonl_log(path):
        step = num(r.get("step")) if isinstance(r, dict) else None
        if step is None:
            continue
        nested = r.get("metrics")
        metrics = nested if isinstance(nested, dict) else {k: v for k, v in r.items() if k != "step"}
        flat: dict[str, float | list[float]] = {}
        for k, v in metrics.items():
            if isinstance(v, dict):  # {"economic": {"score": .., "ci": [..]}}
                e = estimate(v, "score", "mean", "value")
                if e.value is not None:
                    flat[k] = e.value
                if e.ci:
                    flat[f"{k}_ci"] = list(e.ci)
            elif isinstance(v, list):
                pair = ci_of(v)
                if pair:
                    flat[k] = list(pair)
            elif (x := num(v)) is not None:
                flat[k] = x
        rows.append({"step": int(step), "metrics": flat})
    return sorted(rows, key=lambda r: r["step"])


def read_tune_run(path: Path, summary: dict[str, Any] | None = None) -> TuneRun:
    run = TuneRun(name=path.name, path=path, summary=summary or {})
    run.trajectory = (
        read_trajectory(path / "trajectory.jsonl") if (path / "trajectory.jsonl").is_file() else []
    )
    run.metrics = [r for r in read_jsonl_log(path / "metrics.jsonl") if isinstance(r, dict)]
    run.config_text = _read_text(path / "config.yaml")
    run.card_text = _read_text(path / "adapter" / "README.md", 20_000)
    adapter = path / "adapter"
    if adapter.is_dir() and any(adapter.glob("*.safetensors")):
        run.adapter_hash = sha256_dir(adapter, "*.safetensors")[:16]
    else:
        run.adapter_hash = run.summary.get("adapter_hash") or sub_dict(run.summary, "final").get(
            "adapter_hash"
        )
    return run
