"""Rows of a source -> record dicts, one reader per schema: ``politune`` (with an optional column ``mapping``),
``shp`` and ``webgpt``; plus schema detection from the columns. The schemas are described in
:mod:`politune.data.loaders`. A reader returns ``(row, dict or None, problems)`` per row and counts the rows a
schema filter drops on purpose in ``dropped``."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

from politune.data.io import RawRow
from politune.data.validate import _answer
from politune.errors import PolituneError

MAPPABLE = (
    "id",
    "prompt",
    "chosen",
    "rejected",
    "response",
    "system",
    "meta",
    "topic",
    "axis",
    "stance",
    "community",
)
_META_MAPPABLE = ("topic", "axis", "stance", "community")


#: One source row, its record dict (None when the row is unusable) and its ``(field, problem)`` list.
RowDict = tuple[RawRow, dict[str, Any] | None, list[tuple[str, str]]]


def _get(row: dict[str, Any], path: str) -> Any:
    """``row[path]``, or a dotted path into nested dicts (``question.full_text``); JSON-string cells decoded."""
    if path in row:
        return row[path]
    cur: Any = row
    for part in path.split("."):
        if isinstance(cur, str) and cur[:1] == "{":
            try:
                cur = json.loads(cur)
            except ValueError:
                return None
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _maybe_json(v: Any, opener: str) -> Any:
    """CSV / Parquet cells hold nested values as JSON text: decode them when they look like it (a list only
    when it is a list of objects, i.e. chat messages, so a text that happens to be a JSON list stays text)."""
    if isinstance(v, str) and v[:1] == opener:
        try:
            out = json.loads(v)
        except ValueError:
            return v
        if opener == "[" and not (isinstance(out, list) and out and all(isinstance(m, dict) for m in out)):
            return v
        return out
    return v


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def source_stem(src: str) -> str:
    base = src.rstrip("/").split("/")[-1].split(":")[-1] or "row"
    for s in (".jsonl.gz", ".jsonl", ".json", ".csv", ".parquet"):
        if base.lower().endswith(s):
            base = base[: -len(s)]
    return base or "row"


def detect_schema(rows: list[RawRow], label: str) -> tuple[str, str]:
    """``(schema, kind)`` from the columns of the first rows."""
    keys: set[str] = set()
    for r in rows[:200]:
        if r.row is not None:
            keys.update(r.row)
    unreadable = [r for r in rows if r.row is None]
    if not keys and unreadable:  # rows that are all empty objects ({}) fall through: no columns
        bad = unreadable[0]
        more = f" (and {len(unreadable) - 1} more unreadable rows)" if len(unreadable) > 1 else ""
        field, problem = bad.problem()
        raise PolituneError(f"{bad.loc}: {field}: {problem}; no readable rows{more}")
    if {"human_ref_A", "human_ref_B"} <= keys:
        return "shp", "preference"
    if {"answer_0", "answer_1"} <= keys:
        return "webgpt", "preference"
    if {"chosen", "rejected"} <= keys:
        return "politune", "preference"
    if "prompt" in keys and ({"response"} & keys or {"completion"} & keys):
        return "politune", "instruction"
    cols = ", ".join(sorted(keys)[:20]) or "none"
    raise PolituneError(
        f"{label}: cannot tell the schema from the columns ({cols}); expected prompt/chosen/"
        f"rejected (politune), prompt/response, human_ref_A/human_ref_B/labels (shp) or "
        f"question/answer_0/answer_1 (webgpt); pass --schema or --map prompt=COL,chosen=COL,..."
    )


def require_columns(rows: list[RawRow], label: str, required: list[str]) -> None:
    """A column absent from every row is a file-level problem: one line, not one per row."""
    present: set[str] = set()
    for r in rows:
        if r.row is not None:
            present.update(r.row)
    good = [r.row for r in rows if r.row is not None]
    for col in required:
        if col in present or (good and any(_get(row, col) is not None for row in good[:50])):
            continue
        cols = ", ".join(sorted(present)[:20]) or "none"
        raise PolituneError(
            f"{label}: missing column {col!r} (columns: {cols}); "
            f"use --map {col.split('.')[0]}=COLUMN to name it"
        )


# ---------------------------------------------------------------- adapters: row -> record dict


def politune_dict(row: dict[str, Any], kind: str, mapping: dict[str, str]) -> dict[str, Any]:
    m = mapping
    d: dict[str, Any] = {"id": _get(row, m.get("id", "id"))}
    prompt = _maybe_json(_get(row, m.get("prompt", "prompt")), "[")
    system = _get(row, m["system"]) if "system" in m else None
    if isinstance(system, str) and system.strip():
        prompt = [
            {"role": "system", "content": system},
            *([{"role": "user", "content": prompt}] if isinstance(prompt, str) else (prompt or [])),
        ]
    d["prompt"] = prompt
    if kind == "preference":
        d["chosen"] = _answer(_maybe_json(_get(row, m.get("chosen", "chosen")), "["))
        d["rejected"] = _answer(_maybe_json(_get(row, m.get("rejected", "rejected")), "["))
    else:
        key = m.get("response") or ("response" if "response" in row else "completion")
        d["response"] = _answer(_maybe_json(_get(row, key), "["))
    meta = _maybe_json(_get(row, m.get("meta", "meta")), "{")
    if meta is None:
        meta = {}
    if isinstance(meta, dict):  # Arrow-backed sources fill keys other rows had with None: absent means absent
        meta = {k: v for k, v in meta.items() if v is not None}
        for k in _META_MAPPABLE:
            if k in m and _get(row, m[k]) is not None:
                meta[k] = _get(row, m[k])
    d["meta"] = meta
    return d


def shp_dicts(
    rows: list[RawRow],
    label: str,
    seed: int,
    min_score_ratio: float | None,
    max_pairs_per_post: int | None,
    dropped: dict[str, int],
) -> list[RowDict]:
    out: list[RowDict] = []
    kept: list[tuple[RawRow, dict[str, Any]]] = []
    for r in rows:
        if r.row is None:
            out.append((r, None, [r.problem()]))
            continue
        row = r.row
        probs: list[tuple[str, str]] = []
        label_v = _num(row.get("labels"))
        if label_v not in (0.0, 1.0):
            probs.append(
                ("labels", f"expected 1 (A preferred) or 0 (B preferred), got {row.get('labels')!r}")
            )
        ratio = _num(row.get("score_ratio"))
        if min_score_ratio is not None and "score_ratio" in row and ratio is None:
            probs.append(("score_ratio", f"expected a number, got {row.get('score_ratio')!r}"))
        if probs:
            out.append((r, None, probs))
            continue
        if min_score_ratio is not None and ratio is not None and ratio < min_score_ratio:
            dropped["score_ratio"] = dropped.get("score_ratio", 0) + 1
            continue
        kept.append((r, _shp_record(r, row, label_v == 1.0, label)))
    if max_pairs_per_post is not None:
        kept = _cap_per_post(kept, max_pairs_per_post, seed, dropped)
    out.extend((r, d, []) for r, d in kept)
    return out


def _shp_record(r: RawRow, row: dict[str, Any], a_preferred: bool, label: str) -> dict[str, Any]:
    a, b = row.get("human_ref_A"), row.get("human_ref_B")
    chosen, rejected = (a, b) if a_preferred else (b, a)
    prompt = next((row[k] for k in ("history", "post", "prompt", "question") if row.get(k) is not None), None)
    community = row.get("subreddit") or row.get("community") or row.get("domain")
    if isinstance(community, str):
        for sfx in ("_train", "_validation", "_test"):
            if community.endswith(sfx):
                community = community[: -len(sfx)]
    post = row.get("post_id")
    rid = row.get("id")
    if rid is None and post is not None:
        ca, cb = row.get("c_root_id_A"), row.get("c_root_id_B")
        rid = f"{post}-{ca}-{cb}" if ca is not None and cb is not None else None
    prov = {"schema": "shp", "location": r.loc}
    for k in (
        "post_id",
        "score_ratio",
        "score_A",
        "score_B",
        "domain",
        "upvote_ratio",
        "c_root_id_A",
        "c_root_id_B",
    ):
        if row.get(k) is not None:
            prov[k] = row[k]
    meta = {"community": community, "source": label, "provenance": prov}
    return {"id": rid, "prompt": prompt, "chosen": chosen, "rejected": rejected, "meta": meta}


def _cap_per_post(
    kept: list[tuple[RawRow, dict[str, Any]]], cap: int, seed: int, dropped: dict[str, int]
) -> list[tuple[RawRow, dict[str, Any]]]:
    """At most ``cap`` pairs per post, drawn with ``seed``; the order of the rest is kept."""
    by_post: dict[Any, list[int]] = defaultdict(list)
    for i, (_r, d) in enumerate(kept):
        by_post[d["meta"]["provenance"].get("post_id", f"__row{i}")].append(i)
    rng = random.Random(seed)
    keep_idx: set[int] = set()
    for post in sorted(by_post, key=str):
        idx = by_post[post]
        if len(idx) > cap:
            dropped["per_post_cap"] = dropped.get("per_post_cap", 0) + len(idx) - cap
            idx = rng.sample(idx, cap)
        keep_idx.update(idx)
    return [kd for i, kd in enumerate(kept) if i in keep_idx]


def webgpt_dicts(rows: list[RawRow], label: str, keep_ties: bool, dropped: dict[str, int]) -> list[RowDict]:
    out: list[RowDict] = []
    for r in rows:
        if r.row is None:
            out.append((r, None, [r.problem()]))
            continue
        row = r.row
        s0, s1 = _num(row.get("score_0")), _num(row.get("score_1"))
        probs = [
            (f, f"expected a number, got {row.get(f)!r}")
            for f, s in (("score_0", s0), ("score_1", s1))
            if s is None
        ]
        if s0 is None or s1 is None:
            out.append((r, None, probs))
            continue
        if s0 == s1 and not keep_ties:
            dropped["tie"] = dropped.get("tie", 0) + 1
            continue
        first = s0 >= s1
        q = _get(row, "question.full_text")
        if q is None and isinstance(row.get("question"), str):
            q = row["question"]
        qid = _get(row, "question.id")
        a0, a1 = row.get("answer_0"), row.get("answer_1")
        quotes = {
            "chosen": _maybe_json(row.get("quotes_0" if first else "quotes_1"), "{"),
            "rejected": _maybe_json(row.get("quotes_1" if first else "quotes_0"), "{"),
        }
        prov = {
            "schema": "webgpt",
            "location": r.loc,
            "question_id": qid,
            "score_chosen": s0 if first else s1,
            "score_rejected": s1 if first else s0,
            "dataset": _get(row, "question.dataset"),
        }
        meta: dict[str, Any] = {"source": label, "provenance": prov, "quotes": quotes}
        if s0 == s1:
            meta["tie"] = True
        out.append(
            (
                r,
                {
                    "id": row.get("id"),
                    "prompt": q,
                    "chosen": a0 if first else a1,
                    "rejected": a1 if first else a0,
                    "meta": meta,
                },
                [],
            )
        )
    return out


# ---------------------------------------------------------------- load


def parse_builtin(src: str, split: str | None) -> tuple[str, str | None]:
    parts = src.split(":")
    name = parts[1] if len(parts) > 1 else ""
    if len(parts) > 3:
        raise PolituneError(f"{src}: expected builtin:NAME or builtin:NAME:SPLIT")
    if len(parts) == 3:
        if split is not None and split != parts[2]:
            raise PolituneError(f"{src}: split given twice ({parts[2]!r} and split={split!r})")
        split = parts[2]
    return name, split
