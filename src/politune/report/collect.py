"""Find and read every politune result under a set of run folders into one :class:`ReportData`.

Result files are described in docs/results.md. Reading is tolerant on purpose: several writers produce these
files and a newer writer may add keys or leave an optional one out. Extra keys are ignored; a missing optional
piece becomes ``None`` and a line in :attr:`ReportData.missing`; nothing optional ever raises. A file that is
not valid JSON, or whose top level is not an object, is bad input and raises :class:`PolituneError` naming the
file and line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import read_jsonl_log, sha256_dir

RESULT_KINDS = ("compass", "topics", "judge", "quality", "toxicity", "refusal", "tune")
# JSON files that live in run folders but are never results (model/tokenizer/trainer files): not even opened.
_SKIP_JSON = {"adapter_config.json", "config.json", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "trainer_state.json", "vocab.json",
              "added_tokens.json", "model.safetensors.index.json", "preprocessor_config.json"}
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}
_MAX_JSON_BYTES = 64 << 20
AXES = ("economic", "social")


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
class TopicQuestion:
    id: str
    topic: str
    axis: str | None
    question: str
    answer: str | None
    score: float | None


@dataclass
class TopicsModel:
    name: str
    target: dict
    scorer: str
    mean: Estimate
    axis_means: dict[str, Estimate]
    questions: list[TopicQuestion]
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
    comparisons: list[dict] = field(default_factory=list)
    topics: list[TopicsModel] = field(default_factory=list)
    quality: dict[str, dict] = field(default_factory=dict)
    toxicity: dict[str, dict] = field(default_factory=dict)
    refusal: dict[str, dict] = field(default_factory=dict)
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


def _target(entry: dict, index: int) -> dict:
    t = entry.get("target") if isinstance(entry.get("target"), dict) else {}
    name = t.get("name") or entry.get("name") or f"model{index + 1}"
    return {"name": str(name), "model": t.get("model"), "adapter": t.get("adapter"),
            "adapter_hash": t.get("adapter_hash"), "system": t.get("system")}


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PolituneError(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PolituneError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def _models(doc: dict, path: Path) -> list[tuple[dict, dict]]:
    models = doc.get("models")
    if models is None:
        return []
    if not isinstance(models, list):
        raise PolituneError(f"{path}: models: expected a list of model entries, got {type(models).__name__}")
    return [(_target(m, i), m) for i, m in enumerate(models) if isinstance(m, dict)]


# ---------------------------------------------------------------------------------------------------------
# per-kind parsers


def parse_compass(doc: dict, path: Path | None = None) -> list[CompassModel]:
    out = []
    for t, m in _models(doc, path or Path("compass.json")):
        tracks = {}
        for track, td in (m.get("tracks") or {}).items():
            if not isinstance(td, dict):
                continue
            e, s = td.get("economic") or {}, td.get("social") or {}
            covs = [c for c in (num(_get(e, "coverage")), num(_get(s, "coverage"))) if c is not None]
            ns = [int(v) for v in (num(_get(e, "n")), num(_get(s, "n"))) if v is not None]
            tracks[str(track)] = CompassTrack(
                economic=estimate(e, "score", "mean"), social=estimate(s, "score", "mean"),
                coverage=min(covs) if covs else num(td.get("coverage")), n=min(ns) if ns else None,
                refusal_rate=num(td.get("refusal_rate")), content_sensitivity=num(td.get("content_sensitivity")))
        diag = {k: v for k, v in ((k, num(v)) for k, v in (m.get("diagnostics") or {}).items()) if v is not None}
        agree = {k: v for k, v in ((k, num(v)) for k, v in (m.get("agreement") or {}).items()) if v is not None}
        out.append(CompassModel(t["name"], t, tracks, diag, agree, path))
    return out


def _get(d: Any, k: str) -> Any:
    return d.get(k) if isinstance(d, dict) else None


def parse_topics(doc: dict, path: Path | None = None) -> list[TopicsModel]:
    out = []
    scorer = doc.get("scorer") or doc.get("judge") or "unknown"
    scorer = str(scorer.get("name") or scorer.get("model") or "unknown") if isinstance(scorer, dict) else str(scorer)
    for t, m in _models(doc, path or Path("topics.json")):
        qs = []
        for i, q in enumerate(m.get("questions") or []):
            if not isinstance(q, dict):
                continue
            qid = str(q.get("id") or f"q{i + 1}")
            qs.append(TopicQuestion(id=qid, topic=str(q.get("topic") or qid), axis=q.get("axis"),
                                    question=str(q.get("question") or ""),
                                    answer=q.get("answer") if isinstance(q.get("answer"), str) else None,
                                    score=num(q.get("score"))))
        mean = Estimate(num(m.get("mean")), ci_of(m.get("ci")))
        if mean.value is None and qs:  # writer gave no mean: the plain mean of scored questions, no CI
            scored = [q.score for q in qs if q.score is not None]
            mean = Estimate(sum(scored) / len(scored) if scored else None, None)
        am = {str(k): estimate(v, "mean", "score") for k, v in (m.get("axis_means") or {}).items()}
        out.append(TopicsModel(t["name"], t, scorer, mean, am, qs, path))
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
    docs: list[tuple[str, dict, Path]] = []
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
                kind = str(doc["kind"])
                data.sources.append(SourceFile(p, kind, doc.get("provenance") or {}))
                if kind == "tune":
                    run_paths[p.parent] = doc
                else:
                    docs.append((kind, doc, p))
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
            data.targets.setdefault(name, entry["target"])
    _find_missing(data)
    return data


def _read_result(p: Path) -> dict | None:
    """The parsed result file, or None for a JSON file that is not a politune result (ignored)."""
    try:
        if p.stat().st_size > _MAX_JSON_BYTES:
            return None
    except OSError:
        return None
    named = p.name[:-5] in RESULT_KINDS or p.name == "summary.json"
    try:
        doc = _read_json(p)
    except PolituneError:
        if named:
            raise
        return None  # some other JSON file that is not ours
    if not isinstance(doc, dict):
        if named:
            raise PolituneError(f"{p}: expected a JSON object with a \"kind\" key, got {type(doc).__name__}")
        return None
    return doc if doc.get("kind") in RESULT_KINDS else None


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


def _renamer(docs: list[tuple[str, dict, Path]], roots: list[Path], notes: list[str]):
    folders: dict[str, set[Path]] = {}
    for _kind, doc, p in docs:
        models = doc.get("models")
        for i, m in enumerate(models if isinstance(models, list) else []):
            if isinstance(m, dict):
                folders.setdefault(_target(m, i)["name"], set()).add(p.parent)
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


def _add(data: ReportData, kind: str, doc: dict, path: Path, rename) -> None:
    if kind == "compass":
        taken = {m.name for m in data.compass}
        for m in parse_compass(doc, path):
            m.name = m.target["name"] = _unique(rename(m.name, path), taken)
            taken.add(m.name)
            data.compass.append(m)
        if not data.compass_settings and isinstance(doc.get("settings"), dict):
            data.compass_settings = {**doc["settings"], "instrument": doc.get("instrument")}
        comps = doc.get("comparisons")
        if isinstance(comps, list):
            for c in comps:
                if isinstance(c, dict):
                    data.comparisons.append({**c, "a": rename(str(c.get("a", "?")), path),
                                             "b": rename(str(c.get("b", "?")), path)})
    elif kind in ("topics", "judge"):
        taken = {m.name for m in data.topics}
        for m in parse_topics(doc, path):
            m.name = m.target["name"] = _unique(rename(m.name, path), taken)
            taken.add(m.name)
            data.topics.append(m)
    elif kind in ("quality", "toxicity", "refusal"):
        store = getattr(data, kind)
        extra = {k: v for k, v in doc.items() if k not in ("models", "provenance")}
        for t, m in _models(doc, path):
            name = _unique(rename(t["name"], path), store)
            store[name] = {**m, "target": {**t, "name": name}, "_doc": extra}


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
