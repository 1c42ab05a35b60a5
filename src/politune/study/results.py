"""The results table of a study: one row per (cell, model), from the result files of docs/results.md."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from politune.fsutil import atomic_write_text


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _models(doc: dict | None) -> dict[str, dict]:
    if not doc:
        return {}
    return {m.get("target", {}).get("name", f"model{i}"): m for i, m in enumerate(doc.get("models", []))}


def _fmt(x: Any) -> Any:
    return round(x, 4) if isinstance(x, float) and not math.isnan(x) else x


def model_rows(cell_dir: Path) -> list[dict]:
    """Rows for one cell (or one plain run folder): each model's positions, shifts and side-effects."""
    mdir = cell_dir / "measure"
    compass = _read(mdir / "compass.json")
    topics, quality = _models(_read(mdir / "topics.json")), _models(_read(mdir / "quality.json"))
    toxicity, refusal = _models(_read(mdir / "toxicity.json")), _models(_read(mdir / "refusal.json"))
    comps = {(c["b"], c["track"], c["axis"]): c for c in (compass or {}).get("comparisons", []) if c.get("a") == "base"}
    positions = _models(compass)
    names = list(positions) or list(topics) or list(quality)
    rows = []
    for name in names:
        row: dict[str, Any] = {"model": name}
        entry = positions.get(name, {})
        for track, res in entry.get("tracks", {}).items():
            for axis in ("economic", "social"):
                ax = res.get(axis) or {}
                if "score" not in ax:
                    continue
                lo, hi = (ax.get("ci") or [None, None])[:2]
                row[f"{track}.{axis}"] = _fmt(ax["score"])
                row[f"{track}.{axis}.ci"] = f"[{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
                c = comps.get((name, track, axis))
                if c is not None:
                    row[f"{track}.{axis}.shift"] = _fmt(c["diff"])
                    row[f"{track}.{axis}.shift.ci"] = f"[{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]"
        if name in topics:
            row["topics.mean"] = _fmt(topics[name].get("mean"))
        if name in quality:
            q = quality[name]
            row["rouge_l"] = _fmt((q.get("rouge_l") or {}).get("mean"))
            row["perplexity"] = _fmt((q.get("perplexity") or {}).get("mean"))
            d = q.get("delta_vs_base") or {}
            if d.get("rouge_l"):
                row["rouge_l.delta"] = _fmt(d["rouge_l"].get("diff"))
        if name in toxicity:
            row["toxicity.mean"] = _fmt(toxicity[name].get("mean"))
            row["toxicity.share_above"] = _fmt(toxicity[name].get("share_above"))
        if name in refusal:
            row["refusal.rate"] = _fmt(refusal[name].get("rate"))
        rows.append(row)
    return rows


def collect_rows(cells: list[tuple[str, dict, Path]]) -> list[dict]:
    rows = []
    for name, assignment, cell_dir in cells:
        for r in model_rows(cell_dir):
            rows.append({"cell": name, **{k.split(".")[-1]: v
                                          for k, v in assignment.items()}, **r})
    return rows


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def to_markdown(rows: list[dict]) -> str:
    if not rows:
        return "_no results_\n"
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], study_dir: Path) -> None:
    cols = _columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(study_dir / "results.csv", buf.getvalue())
    atomic_write_text(study_dir / "results.md", to_markdown(rows))
