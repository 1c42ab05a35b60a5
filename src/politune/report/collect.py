"""Find and read every politune result under a set of run folders into one :class:`ReportData`.

Measure result files (docs/results.md) are read through their typed models (``politune.measure.results``):
extra keys a newer writer adds are ignored and a missing optional piece becomes ``None`` (and a line in
:attr:`ReportData.missing`); a file that is not valid JSON, or a value of the wrong type, is bad input and raises
one :class:`PolituneError` line naming the file and the field. Tuning run folders (summary.json, trajectory.jsonl,
metrics.jsonl) are read tolerantly: a torn last log line from a killed run is skipped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import read_jsonl_log, sha256_dir
from politune.measure.results import (
    RESULT_TYPES,
    Comparison,
    CompassResult,
    QualityEntry,
    RefusalEntry,
    Result,
    TopicAnswer,
    TopicsResult,
    ToxicityEntry,
    parse_result,
    read_json,
)

RESULT_KINDS = (*RESULT_TYPES, "tune")
# JSON files that live in run folders but are never results (model/tokenizer/trainer files): not even opened.
_SKIP_JSON = {"adapter_config.json", "config.json", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "trainer_state.json", "vocab.json",
              "added_tokens.json", "model.safetensors.index.json", "preprocessor_config.json"}
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}
_MAX_JSON_BYTES = 64 << 20


@dataclass(frozen=True)
class Estimate:
    """A point value and its 95% CI (``None`` when the writer gave none)."""

    value: float | None
    ci: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class CompassTrack:
    economic: Estimate
    social: Estimate
    coverage: float | None = None  # smallest coverage of the two axes
    n: int | None = None
    refusal_rate: float | None = None
    content_sensitivity: float | None = None


@dataclass
class CompassModel:
    name: str
    target: dict
    tracks: dict[str, CompassTrack]
    diagnostics: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    source: Path | None = None

    @property
    def role(self) -> str:
        return target_role(self.target)


@dataclass
class TopicsModel:
    name: str
    target: dict
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
    summary: dict = field(default_factory=dict)
    trajectory: list[dict] = field(default_factory=list)  # [{"step": int, "metrics": {...}}]
    metrics: list[dict] = field(default_factory=list)
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
    provenance: dict


@dataclass
class ReportData:
    run_dirs: list[Path]
    sources: list[SourceFile] = field(default_factory=list)
    compass: list[CompassModel] = field(default_factory=list)
    compass_settings: dict = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    topics: list[TopicsModel] = field(default_factory=list)
    quality: dict[str, QualityEntry] = field(default_factory=dict)  # model name -> entry
    toxicity: dict[str, ToxicityEntry] = field(default_factory=dict)
    toxicity_threshold: float | None = None
    refusal: dict[str, RefusalEntry] = field(default_factory=dict)
    runs: list[TuneRun] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # display path -> resolved config.yaml text
    targets: dict[str, dict] = field(default_factory=dict)  # model name -> Target dict
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def model_names(self) -> list[str]:
        """Every model seen, base(s) first, then adapters, then personas, each group in first-seen order."""
        order = {"base": 0, "adapter": 1, "persona": 2}
        names = list(self.targets)
        return sorted(names, key=lambda n: (order.get(target_role(self.targets[n]), 3), names.index(n)))

    def is_empty(self) -> bool:
        return not (self.compass or self.topics or self.quality or self.toxicity or self.refusal or self.runs)


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


def target_role(target: dict) -> str:
    if target.get("adapter"):
        return "adapter"
    if target.get("system"):
        return "persona"
    return "base"


def _estimate(value: float | None, ci) -> Estimate:
    return Estimate(value, (ci.lo, ci.hi) if ci is not None and ci.ok else None)


# ---------------------------------------------------------------------------------------------------------
# per-kind views of the typed results


def _typed(doc: dict | Result, kind: str, path: Path | None) -> Result:
    return doc if not isinstance(doc, dict) else parse_result(doc, str(path or f"{kind}.json"), kind)


def parse_compass(doc: dict | CompassResult, path: Path | None = None) -> list[CompassModel]:
    res: CompassResult = _typed(doc, "compass", path)  # type: ignore[assignment]
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
                coverage=min(covs) if covs else None, n=min(ns) if ns else None,
                refusal_rate=td.refusal_rate, content_sensitivity=td.content_sensitivity)
        agree = {k: v for k, v in m.agreement.items() if v is not None}
        out.append(CompassModel(m.target.name, m.target.model_dump(), tracks, m.diagnostics.values(), agree, path))
    return out


def parse_topics(doc: dict | TopicsResult, path: Path | None = None) -> list[TopicsModel]:
    res: TopicsResult = _typed(doc, "topics", path)  # type: ignore[assignment]
    out = []
    for m in res.models:
        mean = _estimate(m.mean, m.ci)
        if mean.value is None and m.questions:  # writer gave no mean: the plain mean of scored questions, no CI
            scored = [q.score for q in m.questions if q.score is not None]
            mean = Estimate(sum(scored) / len(scored) if scored else None, None)
        am = {k: _estimate(v.mean, v.ci) for k, v in m.axis_means.items()}
        out.append(TopicsModel(m.target.name, m.target.model_dump(), res.scorer_name, mean, am, list(m.questions),
                               path))
    return out


def _read_text(path: Path, limit: int = 200_000) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit] if path.is_file() else None
    except OSError:
        return None


def read_trajectory(path: Path) -> list[dict]:
    """trajectory.jsonl -> rows ``{"step": int, "metrics": {name: float}}`` sorted by step; rows without a step
    or metrics are skipped, a torn last line (run killed mid-write) too. A flat row (metrics at the top level)
    is accepted."""
    rows = []
    for r in read_jsonl_log(path):
        if not isinstance(r, dict) or num(r.get("step")) is None:
            continue
        metrics = r.get("metrics") if isinstance(r.get("metrics"), dict) else {k: v for k, v in r.items()
                                                                               if k != "step"}
        flat = {}
        for k, v in metrics.items():
            if isinstance(v, dict):  # {"economic": {"score": .., "ci": [..]}}
                e = estimate(v, "score", "mean", "value")
                if e.value is not None:
                    flat[k] = e.value
                if e.ci:
                    flat[f"{k}_ci"] = list(e.ci)
            elif isinstance(v, list):
                if ci_of(v):
                    flat[k] = list(ci_of(v))
            elif num(v) is not None:
                flat[k] = num(v)
        rows.append({"step": int(num(r["step"])), "metrics": flat})
    return sorted(rows, key=lambda r: r["step"])


def read_tune_run(path: Path, summary: dict | None = None) -> TuneRun:
    run = TuneRun(name=path.name, path=path, summary=summary or {})
    run.trajectory = read_trajectory(path / "trajectory.jsonl") if (path / "trajectory.jsonl").is_file() else []
    run.metrics = [r for r in read_jsonl_log(path / "metrics.jsonl") if isinstance(r, dict)]
    run.config_text = _read_text(path / "config.yaml")
    run.card_text = _read_text(path / "adapter" / "README.md", 20_000)
    adapter = path / "adapter"
    if adapter.is_dir() and any(adapter.glob("*.safetensors")):
        run.adapter_hash = sha256_dir(adapter, "*.safetensors")[:16]
    else:
        final = run.summary.get("final") if isinstance(run.summary.get("final"), dict) else {}
        run.adapter_hash = run.summary.get("adapter_hash") or final.get("adapter_hash")
    return run


# ---------------------------------------------------------------------------------------------------------
# discovery


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def _display(path: Path, roots: list[Path]) -> str:
    for r in roots:
        try:
            return str(Path(r.name) / path.relative_to(r))
        except ValueError:
            continue
    return str(path)


def collect(run_dirs: list[Path]) -> ReportData:
    """Read every result file found (recursively) under ``run_dirs``.

    Model names come from each entry's ``target.name``. When the same name comes from result files in different
    folders (two study cells, two run folders), every occurrence is qualified with its folder, ``base@cell-a``,
    so that rows of one folder (compass, quality, toxicity...) still join and never mix with another's.
    """
    roots = []
    for d in run_dirs:
        d = Path(d)
        if not d.exists():
            raise PolituneError(f"{d}: run folder not found")
        roots.append(d.resolve())
    data = ReportData(run_dirs=[Path(d) for d in run_dirs])
    seen_files: set[Path] = set()
    run_paths: dict[Path, dict] = {}
    docs: list[tuple[str, Result, Path]] = []
    for root in roots:
        walk = [(root.parent, [root.name])] if root.is_file() else _walk(root)
        for dirpath, files in walk:
            if {"trajectory.jsonl", "metrics.jsonl"} & set(files):
                run_paths.setdefault(dirpath, {})
            for f in files:
                p = dirpath / f
                if p in seen_files or not f.endswith(".json") or f in _SKIP_JSON:
                    continue
                seen_files.add(p)
                doc = _read_result(p)
                if doc is None:
                    continue
                if isinstance(doc, dict):  # a tuning run's summary.json
                    data.sources.append(SourceFile(p, "tune", doc.get("provenance") or {}))
                    run_paths[p.parent] = doc
                else:
                    data.sources.append(SourceFile(p, doc.kind, doc.provenance))
                    docs.append((doc.kind, doc, p))
            if "config.yaml" in files and dirpath not in run_paths:
                text = _read_text(dirpath / "config.yaml")
                if text is not None:
                    data.configs[_display(dirpath / "config.yaml", roots)] = text
    rename = _renamer(docs, roots, data.notes)
    for kind, doc, p in docs:
        _add(data, kind, doc, p, rename)
    for path, summary in sorted(run_paths.items()):
        run = read_tune_run(path, summary)
        data.runs.append(run)
        if run.config_text is not None:
            data.configs[_display(path / "config.yaml", roots)] = run.config_text
    _name_runs(data.runs, roots)
    for m in data.compass + data.topics:
        data.targets.setdefault(m.name, m.target)
    for kind in ("quality", "toxicity", "refusal"):
        for name, entry in getattr(data, kind).items():
            data.targets.setdefault(name, entry.target.model_dump())
    _find_missing(data)
    return data


def _read_result(p: Path) -> Result | dict | None:
    """The typed result (a tuning summary stays a dict), or None for a JSON file that is not ours (ignored)."""
    try:
        if p.stat().st_size > _MAX_JSON_BYTES:
            return None
    except OSError:
        return None
    named = p.name[:-5] in RESULT_KINDS or p.name == "summary.json"
    try:
        doc = read_json(p)
    except PolituneError:
        if named:
            raise
        return None  # some other JSON file that is not ours
    if not isinstance(doc, dict):
        if named:
            raise PolituneError(f"{p}: expected a JSON object with a \"kind\" key, got {type(doc).__name__}")
        return None
    if doc.get("kind") == "tune":
        return doc
    return parse_result(doc, str(p)) if doc.get("kind") in RESULT_TYPES else None


_NOISE_PARTS = {"measure", "cells", "tune", "tuning", "runs", "results"}


def _label(folder: Path, roots: list[Path]) -> str:
    """A short name for a folder under the roots: its relative path without structural parts (``measure``,
    ``cells``...), prefixed with the root's name when several roots are given."""
    for r in roots:
        base = r if r.is_dir() else r.parent
        try:
            rel = folder.relative_to(base)
        except ValueError:
            continue
        parts = [x for x in rel.parts if x not in _NOISE_PARTS]
        if len(roots) > 1 or not parts:
            parts = [base.name, *parts]
        return "/".join(parts)
    return folder.name


def _renamer(docs: list[tuple[str, Result, Path]], roots: list[Path], notes: list[str]):
    folders: dict[str, set[Path]] = {}
    for _kind, doc, p in docs:
        for m in doc.models:
            folders.setdefault(m.target.name, set()).add(p.parent)
    labels = {f: _label(f, roots) for fs in folders.values() for f in fs}
    if len(set(labels.values())) < len(labels):  # two folders, same short label: use full relative paths
        labels = {f: _display(f, roots) for f in labels}
    dup = {n for n, fs in folders.items() if len(fs) > 1}
    for n in sorted(dup):
        notes.append(f"model {n!r} appears in results from {len(folders[n])} folders; shown as "
                     + ", ".join(sorted(f"{n}@{labels[f]}" for f in folders[n])))

    def rename(name: str, source: Path) -> str:
        return f"{name}@{labels[source.parent]}" if name in dup else name

    return rename


def _unique(name: str, taken) -> str:
    """Two entries with one name in the same file: the second becomes ``name-2``."""
    alt, i = name, 2
    while alt in taken:
        alt, i = f"{name}-{i}", i + 1
    return alt


def _add(data: ReportData, kind: str, doc: Result, path: Path, rename) -> None:
    if isinstance(doc, CompassResult):
        taken = {m.name for m in data.compass}
        for m in parse_compass(doc, path):
            m.name = m.target["name"] = _unique(rename(m.name, path), taken)
            taken.add(m.name)
            data.compass.append(m)
        if not data.compass_settings and doc.settings:
            data.compass_settings = {**doc.settings, "instrument": doc.instrument}
        data.comparisons += [c.model_copy(update={"a": rename(c.a, path), "b": rename(c.b, path)})
                             for c in doc.comparisons]
    elif isinstance(doc, TopicsResult):
        taken = {m.name for m in data.topics}
        for m in parse_topics(doc, path):
            m.name = m.target["name"] = _unique(rename(m.name, path), taken)
            taken.add(m.name)
            data.topics.append(m)
    else:  # quality, toxicity, refusal: the typed entries, keyed by (qualified) model name
        store = getattr(data, kind)
        if kind == "toxicity" and data.toxicity_threshold is None:
            data.toxicity_threshold = doc.threshold
        for m in doc.models:
            name = _unique(rename(m.target.name, path), store)
            store[name] = m.model_copy(update={"target": m.target.model_copy(update={"name": name})})


def _name_runs(runs: list[TuneRun], roots: list[Path]) -> None:
    """Runs are named by folder; a run nested in another (``sft_dpo``'s ``sft/`` stage) is ``parent/child``;
    runs whose names clash are named by their path under the roots."""
    paths = {r.path for r in runs}
    for r in runs:
        for parent in r.path.parents:
            if parent in paths:
                r.name = f"{parent.name}/{r.path.relative_to(parent)}"
                break
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in runs:
        if counts[r.name] > 1:
            r.name = _label(r.path, roots)


def _find_missing(data: ReportData) -> None:
    miss = data.missing
    if not data.compass:
        miss.append("compass: no compass.json found (run `politune measure compass`): no compass chart")
    if not data.topics:
        miss.append("topics: no topics.json or judge scores found (run `politune measure topics`): no topic bars "
                    "and no sample answers")
    for kind in ("quality", "toxicity", "refusal"):
        if not getattr(data, kind):
            miss.append(f"{kind}: no {kind}.json found (run `politune measure {kind if kind != 'refusal' else 'all'}`)")
    if not data.runs:
        miss.append("tuning runs: no run folder with trajectory.jsonl or metrics.jsonl found: no trajectory chart")
    elif not any(r.trajectory for r in data.runs):
        miss.append("trajectories: no trajectory.jsonl in any tuning run (tune with evaluation enabled): "
                    "no trajectory chart")
    else:
        for r in data.runs:
            if not r.trajectory:
                miss.append(f"trajectories: run {r.name} has no trajectory.jsonl")
    for r in data.runs:
        if r.card_text is None:
            miss.append(f"model card: run {r.name} has no adapter/README.md")
        if r.config_text is None:
            miss.append(f"config: run {r.name} has no config.yaml")
    if data.compass:
        tracks = sorted({t for m in data.compass for t in m.tracks})
        for m in data.compass:
            lacking = [t for t in tracks if t not in m.tracks]
            if lacking:
                miss.append(f"compass: model {m.name} has no {', '.join(lacking)} track")
        if not any(m.diagnostics for m in data.compass):
            miss.append("compass diagnostics: no acquiescence / order-sensitivity diagnostics in compass results")
    for name in data.targets:
        for kind in ("quality", "toxicity", "refusal"):
            store = getattr(data, kind)
            if store and name not in store:
                miss.append(f"{kind}: no result for model {name}")
