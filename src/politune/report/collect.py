"""Find and read every politune result under a set of run folders into one :class:`ReportData`.

Measure result files (docs/results.md) are read through their typed models (``politune.measure.results``):
extra keys a newer writer adds are ignored and a missing optional piece becomes ``None`` (and a line in
:attr:`ReportData.missing`); a file that is not valid JSON, or a value of the wrong type, is bad input and raises
one :class:`PolituneError` line naming the file and the field. Tuning run folders (summary.json, trajectory.jsonl,
metrics.jsonl) are read tolerantly: a torn last log line from a killed run is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.measure.results import (
    RESULT_TYPES,
    CompassResult,
    Result,
    TopicsResult,
    ToxicityResult,
    WinrateResult,
    parse_result,
    read_json,
)
from politune.report.views import (
    ReportData,
    SourceFile,
    TuneRun,
    _read_text,
    parse_compass,
    parse_topics,
    read_tune_run,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from politune.report.charts import ViewT

RESULT_KINDS = (*RESULT_TYPES, "tune")
# JSON files that live in run folders but are never results (model/tokenizer/trainer files): not even opened.
_SKIP_JSON = {
    "adapter_config.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "trainer_state.json",
    "vocab.json",
    "added_tokens.json",
    "model.safetensors.index.json",
    "preprocessor_config.json",
}
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules"}
_MAX_JSON_BYTES = 64 << 20


# ---------------------------------------------------------------------------------------------------------
# discovery


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
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


# result kinds whose ReportData field maps a model name to a typed entry with a ``target``
ENTRY_KINDS = (
    "quality",
    "toxicity",
    "refusal",
    "evenhand",
    "safety",
    "issues",
    "behaviour",
    "reward_accuracy",
)


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
    run_paths: dict[Path, dict[str, Any]] = {}
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
    data.notes.extend(_judge_notes(docs))
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
    for kind in ENTRY_KINDS:
        for name, entry in getattr(data, kind).items():
            data.targets.setdefault(name, entry.target)
    _find_missing(data)
    return data


def _judge_notes(docs: list[tuple[str, Result, Path]]) -> list[str]:
    """One line per stance scorer that read open answers: its validated accuracy next to the positions."""
    from politune.measure.validate_judge import stance_judge, validation_note

    what: dict[str, dict[str, None]] = {}  # scorer name -> what it read (an ordered set)
    validations: dict[str, dict[str, Any] | None] = {}
    for _, doc, _ in docs:
        if not isinstance(doc, (CompassResult, TopicsResult)):
            continue
        name, validation = stance_judge(doc)
        if name:
            what.setdefault(name, {})["open-track" if isinstance(doc, CompassResult) else "topic"] = None
            validations.setdefault(name, validation)
    return [
        " and ".join(w).capitalize() + " " + validation_note(n, validations[n]) + "." for n, w in what.items()
    ]


def _read_result(p: Path) -> Result | dict[str, Any] | None:
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
            raise PolituneError(f'{p}: expected a JSON object with a "kind" key, got {type(doc).__name__}')
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


def _renamer(
    docs: list[tuple[str, Result, Path]], roots: list[Path], notes: list[str]
) -> Callable[[str, Path], str]:
    folders: dict[str, set[Path]] = {}
    for _kind, doc, p in docs:
        for m in doc.models:
            folders.setdefault(m.target.name, set()).add(p.parent)
    labels = {f: _label(f, roots) for fs in folders.values() for f in fs}
    if len(set(labels.values())) < len(labels):  # two folders, same short label: use full relative paths
        labels = {f: _display(f, roots) for f in labels}
    dup = {n for n, fs in folders.items() if len(fs) > 1}
    for n in sorted(dup):
        notes.append(
            f"model {n!r} appears in results from {len(folders[n])} folders; shown as "
            + ", ".join(sorted(f"{n}@{labels[f]}" for f in folders[n]))
        )

    def rename(name: str, source: Path) -> str:
        return f"{name}@{labels[source.parent]}" if name in dup else name

    return rename


def _unique(name: str, taken: set[str]) -> str:
    """Two entries with one name in the same file: the second becomes ``name-2``."""
    alt, i = name, 2
    while alt in taken:
        alt, i = f"{name}-{i}", i + 1
    return alt


def _add_models(into: list[ViewT], models: list[ViewT], rename: Callable[[str], str]) -> None:
    """Append ``models`` under their (qualified) names, each made unique among those already there."""
    taken = {m.name for m in into}
    for m in models:
        m.name = _unique(rename(m.name), taken)
        m.target = m.target.model_copy(update={"name": m.name})
        taken.add(m.name)
        into.append(m)


def _add(data: ReportData, kind: str, doc: Result, path: Path, rename: Callable[[str, Path], str]) -> None:
    if isinstance(doc, CompassResult):
        _add_models(data.compass, parse_compass(doc, path), lambda name: rename(name, path))
        if not data.compass_settings and doc.settings:
            data.compass_settings = {**doc.settings, "instrument": doc.instrument}
        data.comparisons += [
            c.model_copy(update={"a": rename(c.a, path), "b": rename(c.b, path)}) for c in doc.comparisons
        ]
    elif isinstance(doc, TopicsResult):
        _add_models(data.topics, parse_topics(doc, path), lambda name: rename(name, path))
    elif isinstance(doc, WinrateResult):  # pairwise: comparisons name their two models
        for w in doc.models:
            name = rename(w.target.name, path)
            data.targets.setdefault(name, w.target.model_copy(update={"name": name}))
        data.winrate += [
            c.model_copy(update={"a": rename(c.a, path), "b": rename(c.b, path)}) for c in doc.comparisons
        ]
    else:  # the other kinds: the typed entries, keyed by (qualified) model name
        store = getattr(data, kind)
        if isinstance(doc, ToxicityResult) and data.toxicity_threshold is None:
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
        miss.append(
            "topics: no topics.json or judge scores found (run `politune measure topics`): no topic bars "
            "and no sample answers"
        )
    for kind in ("quality", "toxicity", "refusal"):
        if not getattr(data, kind):
            miss.append(
                f"{kind}: no {kind}.json found (run `politune measure {kind if kind != 'refusal' else 'all'}`)"
            )
    if not data.runs:
        miss.append(
            "tuning runs: no run folder with trajectory.jsonl or metrics.jsonl found: no trajectory chart"
        )
    elif not any(r.trajectory for r in data.runs):
        miss.append(
            "trajectories: no trajectory.jsonl in any tuning run (tune with evaluation enabled): "
            "no trajectory chart"
        )
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
            miss.append(
                "compass diagnostics: no acquiescence / order-sensitivity diagnostics in compass results"
            )
    for name in data.targets:
        for kind in ("quality", "toxicity", "refusal"):
            store = getattr(data, kind)
            if store and name not in store:
                miss.append(f"{kind}: no result for model {name}")
