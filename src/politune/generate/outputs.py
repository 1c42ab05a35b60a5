"""The outputs of a generate run, rebuilt from the work items in corpus order and written atomically:
``preference.jsonl``, ``instruction.jsonl``, ``filter.jsonl`` (every post's rating), ``rejects.jsonl``,
``summary.json`` and ``config.yaml``; plus the filter's precision / recall against hidden labels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.config import save_resolved
from politune.fsutil import atomic_write_json, atomic_write_jsonl
from politune.generate.cache import Cache
from politune.generate.config import GenerateConfig
from politune.generate.corpus import Corpus
from politune.generate.parsing import Rating, Triplet
from politune.generate.stages import Item
from politune.generate.teachers import Teacher
from politune.generate.templates import Template

if TYPE_CHECKING:
    from politune.data.schema import InstructionExample, PreferencePair
    from politune.measure.scorer import StanceScorer


@dataclass
class GenerateResult:
    out: Path
    summary: dict[str, Any]
    preference: list[PreferencePair]
    instruction: list[InstructionExample]
    rejects: list[dict[str, Any]]
    ratings: list[dict[str, Any]]


@dataclass
class Run:
    """One run's resolved inputs and the work items its stages filled in."""

    cfg: GenerateConfig
    corpus: Corpus
    filter_template: Template
    write_template: Template
    teacher: Teacher
    cache: Cache
    sign: int | None  # where the target sits on the stance axis (None: unknown)
    scorer: StanceScorer | None = None  # the stance scorer of the write check, if any
    items: list[Item] = field(default_factory=list)  # filter stage, one per post
    kept_ids: set[str] = field(default_factory=set)
    write_items: list[Item] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def slant_to_target(slant: float, sign: int | None) -> float | None:
    return None if sign is None else round(slant * sign, 4)


def _failure(it: Item, stage: str, transport: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> None:
    if it.transport_error is not None:  # not the teacher's fault: not cached, a re-run asks again
        transport.append({"post_id": it.post.id, "stage": stage, "error": it.transport_error})
    else:
        rejects.append(
            {
                "post_id": it.post.id,
                "stage": stage,
                "reason": it.reason,
                "attempts": len(it.attempts),
                "last_output": it.attempts[-1]["output"],
            }
        )


def _rating_rows(
    run: Run, transport: list[dict[str, Any]], rejects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for it in run.items:
        r: Rating | None = it.result
        row: dict[str, Any] = {
            "post_id": it.post.id,
            "text": it.post.text,
            "relevance": r.relevance if r else None,
            "topic": r.topic if r else None,
            "slant": r.slant if r else None,
            "slant_to_target": slant_to_target(r.slant, run.sign) if r else None,
            "kept": it.post.id in run.kept_ids,
            "attempts": len(it.attempts),
            "error": None if r else it.reason,
        }
        if it.post.label is not None:
            row["label"] = it.post.label
        rows.append(row)
        if run.cfg.filter.enabled and r is None:
            _failure(it, "filter", transport, rejects)
    return rows


def _pairs(
    run: Run, transport: list[dict[str, Any]], rejects: list[dict[str, Any]]
) -> tuple[list[PreferencePair], list[InstructionExample]]:
    from politune.data import InstructionExample, PreferencePair

    cfg = run.cfg
    prefs, insts = [], []
    by_id = {it.post.id: it for it in run.items}
    for it in run.write_items:
        if it.result is None:
            _failure(it, "write", transport, rejects)
            continue
        rating: Rating | None = by_id[it.post.id].result
        t: Triplet = it.result
        last = it.attempts[-1]
        prov = {
            "post_id": it.post.id,
            "teacher": run.teacher.name,
            "template_filter": run.filter_template.short_hash,
            "template_write": run.write_template.short_hash,
            "seed": last["seed"],
            "attempt": last["attempt"],
            "relevance": rating.relevance if rating else None,
            "slant": rating.slant if rating else None,
            "stance_scorer": getattr(run.scorer, "name", None),
            **it.checks,
        }
        for k in ("author", "community", "date"):
            if getattr(it.post, k):
                prov[k] = getattr(it.post, k)
        meta = {
            "topic": rating.topic if rating else None,
            "axis": cfg.stance.axis,
            "stance": cfg.target,
            "source": f"generate:{run.corpus.source}",
            "provenance": prov,
        }
        rid = f"gen-{cfg.target}-{it.post.id}"
        prefs.append(PreferencePair(rid, t.instruction, t.positive, t.negative, json.loads(json.dumps(meta))))
        insts.append(InstructionExample(rid, t.instruction, t.positive, json.loads(json.dumps(meta))))
    return prefs, insts


def _summary(
    run: Run,
    rows: list[dict[str, Any]],
    written: int,
    failed: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    cfg, transport, rejects = run.cfg, failed[0], failed[1]
    usage = getattr(getattr(run.teacher, "client", None), "usage", None)
    ft, wt = run.filter_template, run.write_template
    return {
        "complete": not transport,
        "corpus": run.corpus.source,
        "target": cfg.target,
        "teacher": run.teacher.name,
        "templates": {
            "filter": {"source": ft.source, "sha256": ft.sha256},
            "write": {"source": wt.source, "sha256": wt.sha256},
        },
        "counts": {
            "posts": len(run.items),
            "skipped_empty": run.corpus.skipped_empty,
            "rated": sum(1 for it in run.items if it.result is not None) if cfg.filter.enabled else None,
            "kept": len(run.kept_ids),
            "written": written,
            "rejected_filter": sum(1 for r in rejects if r["stage"] == "filter"),
            "rejected_write": sum(1 for r in rejects if r["stage"] == "write"),
            "transport_failed": len(transport),
        },
        "cache": {"entries_reused": run.cache.loaded, "entries_added": run.cache.added},
        "stance_scorer": getattr(run.scorer, "name", None),
        "filter_metrics": filter_metrics(rows) if cfg.filter.enabled else None,
        "transport_failures": transport[:20],
        "usage": usage.as_dict() if usage is not None else None,
    }


def write_outputs(run: Run, elapsed: float) -> GenerateResult:
    """Write every output file of the run into ``run.out``; what was written."""
    from politune.data import save
    from politune.provenance import provenance

    out = run.out
    transport: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    rows = _rating_rows(run, transport, rejects)
    prefs, insts = _pairs(run, transport, rejects)
    for name, pairs in (("preference.jsonl", prefs), ("instruction.jsonl", insts)):
        if pairs:
            save(pairs, out / name)
        else:
            atomic_write_jsonl(out / name, [])
    atomic_write_jsonl(out / "filter.jsonl", rows)
    atomic_write_jsonl(out / "rejects.jsonl", rejects)
    save_resolved(run.cfg, out)
    summary = {
        **_summary(run, rows, len(prefs), (transport, rejects)),
        "elapsed_s": round(elapsed, 2),
        "provenance": provenance(),
    }
    atomic_write_json(out / "summary.json", summary)
    return GenerateResult(out, summary, prefs, insts, rejects, rows)


def filter_metrics(rows: list[dict[str, Any]], min_relevance: float | None = None) -> dict[str, Any] | None:
    """Precision / recall / F1 of the filter's keep decision against the hidden ``relevant`` labels (built-in
    corpus), with 95% bootstrap CIs over posts; a post the teacher could not rate counts as not kept. Also
    the slant sign agreement on labelled left/right posts the teacher rated."""
    from politune.measure.stats import bootstrap_ci

    lab = [r for r in rows if isinstance(r.get("label"), dict) and "relevant" in r["label"]]
    if not lab:
        return None
    y = [bool(r["label"]["relevant"]) for r in lab]
    if min_relevance is None:
        p = [bool(r["kept"]) for r in lab]
    else:
        p = [r["relevance"] is not None and r["relevance"] >= min_relevance for r in lab]
    tp = sum(a and b for a, b in zip(y, p, strict=True))
    fp = sum(b and not a for a, b in zip(y, p, strict=True))
    fn = sum(a and not b for a, b in zip(y, p, strict=True))
    tn = len(y) - tp - fp - fn
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec == 0 or rec == 0 else None)
    kept_hits = [1.0 if a else 0.0 for a, b in zip(y, p, strict=True) if b]
    rel_hits = [1.0 if b else 0.0 for a, b in zip(y, p, strict=True) if a]
    sl = [r for r in lab if r["label"].get("slant") in ("left", "right") and r.get("slant") is not None]
    agree = [
        1.0 if (r["slant"] < 0) == (r["label"]["slant"] == "left") and r["slant"] != 0 else 0.0 for r in sl
    ]
    return {
        "n": len(lab),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": prec,
        "precision_ci": list(bootstrap_ci(kept_hits)) if kept_hits else None,
        "recall": rec,
        "recall_ci": list(bootstrap_ci(rel_hits)) if rel_hits else None,
        "f1": f1,
        "accuracy": (tp + tn) / len(y),
        "unrated": sum(1 for r in lab if r["relevance"] is None),
        "slant_sign_agreement": sum(agree) / len(agree) if agree else None,
        "slant_n": len(agree),
    }
