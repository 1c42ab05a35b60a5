"""``load`` any source into :class:`PreferencePair` / :class:`InstructionExample` records, ``save`` them, and turn
them into a ``datasets.Dataset`` for TRL.

Sources: ``builtin:NAME[:SPLIT]``, ``hf:OWNER/NAME``, a ``.jsonl`` / ``.jsonl.gz`` / ``.json`` / ``.csv`` /
``.parquet`` file, or a folder (``save_to_disk`` output, or table files). Schemas (``schema="auto"`` picks from
the columns):

- ``politune``: ``prompt`` / ``chosen`` / ``rejected`` (or ``prompt`` / ``response`` | ``completion`` for
  instruction data), optional ``id`` and ``meta``; TRL's conversational columns are accepted too;
- ``shp`` (SHP, ComPreD): ``history`` (or ``post``/``prompt``), ``human_ref_A`` / ``human_ref_B``, ``labels``
  (1 = A preferred), ``score_ratio`` (kept when >= ``min_score_ratio``, default 2), ``post_id`` (at most
  ``max_pairs_per_post`` pairs each, default 5, seeded), ``subreddit`` or ``domain`` -> ``meta["community"]``;
- ``webgpt`` (WebGPT comparisons): ``question.full_text``, ``answer_0/1``, ``score_0/1``, ``quotes_0/1``; the
  higher score is chosen; ties are dropped unless ``keep_ties``;
- a column ``mapping`` (``{"prompt": "question", "chosen": "good", "rejected": "bad"}``; dotted paths reach
  into nested columns; ``system``, ``topic``, ``axis``, ``stance``, ``community`` may be mapped too).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.data.io import RawRow, read_rows, suffix_of, table_bytes
from politune.data.schema import InstructionExample, PreferencePair, Record, chat_messages
from politune.data.validate import DEFAULT_MAX_CHARS, Issue, _answer, check_fields, token_issues
from politune.errors import PolituneError
from politune.fsutil import atomic_write_bytes, atomic_write_json

SCHEMAS = ("auto", "politune", "shp", "webgpt")
MAPPABLE = ("id", "prompt", "chosen", "rejected", "response", "system", "meta", "topic", "axis", "stance",
            "community")
_META_MAPPABLE = ("topic", "axis", "stance", "community")


@dataclass
class LoadReport:
    """Everything a load found: the good records (with their source locations), the problems, the rejected
    rows (each with its reasons), and rows dropped on purpose by a schema filter (not errors)."""

    source: str
    schema: str
    kind: str  # "preference" | "instruction"
    items: list[Record] = field(default_factory=list)
    locs: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0

    def error_line(self) -> str:
        first = str(self.issues[0])
        n_rows = len(self.rejected)
        more = f" (+{len(self.issues) - 1} more problems in {n_rows} bad rows)" if len(self.issues) > 1 else ""
        return (f"{first}{more}; `politune data validate {self.source}` lists them all, "
                f"--drop-invalid keeps the good rows")


# ---------------------------------------------------------------- helpers


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


def _stem(src: str) -> str:
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
    if not keys:
        bad = rows[0]
        more = f" (and {len(rows) - 1} more unreadable rows)" if len(rows) > 1 else ""
        raise PolituneError(f"{bad.loc}: {bad.error[0]}: {bad.error[1]}; no readable rows{more}")
    if {"human_ref_A", "human_ref_B"} <= keys:
        return "shp", "preference"
    if {"answer_0", "answer_1"} <= keys:
        return "webgpt", "preference"
    if {"chosen", "rejected"} <= keys:
        return "politune", "preference"
    if "prompt" in keys and ({"response"} & keys or {"completion"} & keys):
        return "politune", "instruction"
    cols = ", ".join(sorted(keys)[:20])
    raise PolituneError(f"{label}: cannot tell the schema from the columns ({cols}); expected prompt/chosen/"
                        f"rejected (politune), prompt/response, human_ref_A/human_ref_B/labels (shp) or "
                        f"question/answer_0/answer_1 (webgpt); pass --schema or --map prompt=COL,chosen=COL,...")


def _require_columns(rows: list[RawRow], label: str, required: list[str]) -> None:
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
        raise PolituneError(f"{label}: missing column {col!r} (columns: {cols}); "
                            f"use --map {col.split('.')[0]}=COLUMN to name it")


# ---------------------------------------------------------------- adapters: row -> record dict


def _politune_dict(row: dict[str, Any], kind: str, mapping: dict[str, str]) -> dict[str, Any]:
    m = mapping
    d: dict[str, Any] = {"id": _get(row, m.get("id", "id"))}
    prompt = _maybe_json(_get(row, m.get("prompt", "prompt")), "[")
    system = _get(row, m["system"]) if "system" in m else None
    if isinstance(system, str) and system.strip():
        prompt = [{"role": "system", "content": system},
                  *([{"role": "user", "content": prompt}] if isinstance(prompt, str) else (prompt or []))]
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


def _shp_dicts(rows: list[RawRow], label: str, seed: int, min_score_ratio: float | None,
               max_pairs_per_post: int | None, report: LoadReport) -> list[tuple[RawRow, dict | None, list]]:
    out: list[tuple[RawRow, dict | None, list]] = []
    kept: list[tuple[RawRow, dict]] = []
    for r in rows:
        if r.row is None:
            out.append((r, None, [r.error]))
            continue
        row = r.row
        probs = []
        label_v = _num(row.get("labels"))
        if label_v not in (0.0, 1.0):
            probs.append(("labels", f"expected 1 (A preferred) or 0 (B preferred), got {row.get('labels')!r}"))
        ratio = _num(row.get("score_ratio"))
        if min_score_ratio is not None and "score_ratio" in row and ratio is None:
            probs.append(("score_ratio", f"expected a number, got {row.get('score_ratio')!r}"))
        if probs:
            out.append((r, None, probs))
            continue
        if min_score_ratio is not None and ratio is not None and ratio < min_score_ratio:
            report.dropped["score_ratio"] = report.dropped.get("score_ratio", 0) + 1
            continue
        a, b = row.get("human_ref_A"), row.get("human_ref_B")
        chosen, rejected = (a, b) if label_v == 1.0 else (b, a)
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
        for k in ("post_id", "score_ratio", "score_A", "score_B", "domain", "upvote_ratio", "c_root_id_A",
                  "c_root_id_B"):
            if row.get(k) is not None:
                prov[k] = row[k]
        meta = {"community": community, "source": label, "provenance": prov}
        kept.append((r, {"id": rid, "prompt": prompt, "chosen": chosen, "rejected": rejected, "meta": meta}))
    if max_pairs_per_post is not None:
        by_post: dict[Any, list[int]] = defaultdict(list)
        for i, (_r, d) in enumerate(kept):
            by_post[d["meta"]["provenance"].get("post_id", f"__row{i}")].append(i)
        rng = random.Random(seed)
        keep_idx: set[int] = set()
        for post in sorted(by_post, key=str):
            idx = by_post[post]
            if len(idx) > max_pairs_per_post:
                report.dropped["per_post_cap"] = report.dropped.get("per_post_cap", 0) + len(idx) - max_pairs_per_post
                idx = rng.sample(idx, max_pairs_per_post)
            keep_idx.update(idx)
        kept = [kd for i, kd in enumerate(kept) if i in keep_idx]
    out.extend((r, d, []) for r, d in kept)
    return out


def _webgpt_dicts(rows: list[RawRow], label: str, keep_ties: bool,
                  report: LoadReport) -> list[tuple[RawRow, dict | None, list]]:
    out: list[tuple[RawRow, dict | None, list]] = []
    for r in rows:
        if r.row is None:
            out.append((r, None, [r.error]))
            continue
        row = r.row
        s0, s1 = _num(row.get("score_0")), _num(row.get("score_1"))
        probs = [(f, f"expected a number, got {row.get(f)!r}") for f, s in (("score_0", s0), ("score_1", s1))
                 if s is None]
        if probs:
            out.append((r, None, probs))
            continue
        if s0 == s1 and not keep_ties:
            report.dropped["tie"] = report.dropped.get("tie", 0) + 1
            continue
        first = s0 >= s1
        q = _get(row, "question.full_text")
        if q is None and isinstance(row.get("question"), str):
            q = row["question"]
        qid = _get(row, "question.id")
        a0, a1 = row.get("answer_0"), row.get("answer_1")
        quotes = {"chosen": _maybe_json(row.get("quotes_0" if first else "quotes_1"), "{"),
                  "rejected": _maybe_json(row.get("quotes_1" if first else "quotes_0"), "{")}
        prov = {"schema": "webgpt", "location": r.loc, "question_id": qid, "score_chosen": s0 if first else s1,
                "score_rejected": s1 if first else s0, "dataset": _get(row, "question.dataset")}
        meta = {"source": label, "provenance": prov, "quotes": quotes}
        if s0 == s1:
            meta["tie"] = True
        out.append((r, {"id": row.get("id"), "prompt": q, "chosen": a0 if first else a1,
                        "rejected": a1 if first else a0, "meta": meta}, []))
    return out


# ---------------------------------------------------------------- load


def _parse_builtin(src: str, split: str | None) -> tuple[str, str | None]:
    parts = src.split(":")
    name = parts[1] if len(parts) > 1 else ""
    if len(parts) > 3:
        raise PolituneError(f"{src}: expected builtin:NAME or builtin:NAME:SPLIT")
    if len(parts) == 3:
        if split is not None and split != parts[2]:
            raise PolituneError(f"{src}: split given twice ({parts[2]!r} and split={split!r})")
        split = parts[2]
    return name, split


@contextlib.contextmanager
def _gc_paused():
    """Building 100k+ small objects triggers the cyclic GC over and over (~40% of load time); the records
    hold no reference cycles, so pause it for the bulk load."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_report(src: str | os.PathLike, **kwargs: Any) -> LoadReport:
    """Read ``src`` and check every row; never raises for row-level problems (see :class:`LoadReport`).
    Keyword arguments as for :func:`load` (less ``drop_invalid``), plus ``kind`` to force
    ``"preference"`` / ``"instruction"``."""
    with _gc_paused():
        return _load_report(src, **kwargs)


def _load_report(src: str | os.PathLike, *, schema: str = "auto", mapping: dict[str, str] | None = None,
                split: str | None = None, validate: bool = True, max_chars: int | None = DEFAULT_MAX_CHARS,
                tokenizer=None, max_tokens: int | None = None, seed: int = 0, min_score_ratio: float | None = 2.0,
                max_pairs_per_post: int | None = 5, keep_ties: bool = False, hf_config: str | None = None,
                kind: str | None = None) -> LoadReport:
    s = str(src)
    if schema not in SCHEMAS:
        raise PolituneError(f"unknown schema {schema!r}; expected one of {', '.join(SCHEMAS)}")
    mapping = dict(mapping or {})
    bad_keys = sorted(set(mapping) - set(MAPPABLE))
    if bad_keys:
        raise PolituneError(f"--map: unknown field(s) {', '.join(bad_keys)}; expected some of {', '.join(MAPPABLE)}")
    if s.startswith("builtin:"):
        from politune.data.builtin import builtin_report

        name, bsplit = _parse_builtin(s, split)
        return builtin_report(name, bsplit, max_chars=max_chars if validate else None)
    rows, used_split = read_rows(s, split, hf_config)
    meta_split = split if used_split is None else None  # plain files: split= filters meta["split"]
    label = s
    if mapping and schema == "auto":
        schema = "politune"
    if schema == "auto":
        schema, detected_kind = detect_schema(rows, label)
    elif schema == "politune":
        keys = {k for r in rows[:200] if r.row is not None for k in r.row}
        has_pair = bool({"chosen", "rejected"} & (keys | set(mapping)))
        has_response = bool({"response", "completion"} & keys) or "response" in mapping
        detected_kind = "instruction" if has_response and not has_pair else "preference"
    else:
        detected_kind = "preference"
    kind = kind or detected_kind
    report = LoadReport(source=label, schema=schema, kind=kind, rows_read=len(rows))

    if schema == "shp":
        _require_columns(rows, label, ["human_ref_A", "human_ref_B", "labels"])
        dicts = _shp_dicts(rows, label, seed, min_score_ratio, max_pairs_per_post, report)
    elif schema == "webgpt":
        _require_columns(rows, label, ["question", "answer_0", "answer_1", "score_0", "score_1"])
        dicts = _webgpt_dicts(rows, label, keep_ties, report)
    else:
        fields = ["prompt", "chosen", "rejected"] if kind == "preference" else ["prompt"]
        _require_columns(rows, label, [mapping.get(f, f) for f in fields])
        if kind == "instruction" and "response" not in mapping:
            _require_columns(rows, label, ["response" if any(
                r.row is not None and "response" in r.row for r in rows[:200]) else "completion"])
        dicts = [(r, None, [r.error]) if r.row is None else (r, _politune_dict(r.row, kind, mapping), [])
                 for r in rows]

    stem = _stem(label)
    seen: dict[str, str] = {}
    strict = validate
    for n, (r, d, probs) in enumerate(dicts, 1):
        if d is not None:
            if d.get("id") is None:
                d["id"] = f"{stem}-{n:06d}"
            elif isinstance(d["id"], int) and not isinstance(d["id"], bool):
                d["id"] = str(d["id"])
            probs = check_fields(d, kind, strict, max_chars)
            if isinstance(d["id"], str) and d["id"].strip():
                if d["id"] in seen:
                    if strict:
                        probs.append(("id", f"duplicate id {d['id']!r} (first at {seen[d['id']]})"))
                else:
                    seen[d["id"]] = r.loc
        if probs:
            report.issues.extend(Issue(r.loc, f, p) for f, p in probs)
            report.rejected.append({"location": r.loc, "errors": [f"{f}: {p}" for f, p in probs],
                                    "row": r.row if r.row is not None else r.raw})
            continue
        meta = d["meta"]
        meta.setdefault("source", label)
        if meta_split is not None and meta.get("split") != meta_split:
            report.dropped["split"] = report.dropped.get("split", 0) + 1
            continue
        if kind == "preference":
            item: Record = PreferencePair(d["id"], d["prompt"], d["chosen"], d["rejected"], meta)
        else:
            item = InstructionExample(d["id"], d["prompt"], d["response"], meta)
        report.items.append(item)
        report.locs.append(r.loc)
    if strict and tokenizer is not None and max_tokens is not None and report.items:
        tok_issues = token_issues(report.items, report.locs, tokenizer, max_tokens)
        if tok_issues:
            bad = {i.loc for i in tok_issues}
            report.issues.extend(tok_issues)
            keep = [(it, loc) for it, loc in zip(report.items, report.locs, strict=True) if loc not in bad]
            by_loc = defaultdict(list)
            for i in tok_issues:
                by_loc[i.loc].append(f"{i.field}: {i.problem}")
            for it, loc in zip(report.items, report.locs, strict=True):
                if loc in bad:
                    report.rejected.append({"location": loc, "errors": by_loc[loc], "row": it.to_dict()})
            report.items = [it for it, _ in keep]
            report.locs = [loc for _, loc in keep]
    return report


def load(src: str | os.PathLike, *, schema: str = "auto", mapping: dict[str, str] | None = None,
         split: str | None = None, validate: bool = True, drop_invalid: bool = False,
         max_chars: int | None = DEFAULT_MAX_CHARS, tokenizer=None, max_tokens: int | None = None, seed: int = 0,
         min_score_ratio: float | None = 2.0, max_pairs_per_post: int | None = 5, keep_ties: bool = False,
         hf_config: str | None = None) -> list[Record]:
    """Load ``src`` as a list of :class:`PreferencePair` (or :class:`InstructionExample` for instruction data).

    ``split``: ``train`` / ``heldout`` for the built-in set (whole topics), the hub or ``save_to_disk`` split for
    ``hf:`` ids and folders (default ``train``), and a filter on ``meta["split"]`` for plain files.
    ``validate`` (default): any bad row raises one ``file:line: field: problem`` error, unless ``drop_invalid``
    (then bad rows are skipped; use :func:`load_report` to get them). ``validate=False`` keeps only the
    structural checks (missing fields, wrong types). ``tokenizer`` + ``max_tokens`` add a token-length check.
    Schema options: ``min_score_ratio`` / ``max_pairs_per_post`` / ``seed`` (shp), ``keep_ties`` (webgpt).
    """
    rep = load_report(src, schema=schema, mapping=mapping, split=split, validate=validate, max_chars=max_chars,
                      tokenizer=tokenizer, max_tokens=max_tokens, seed=seed, min_score_ratio=min_score_ratio,
                      max_pairs_per_post=max_pairs_per_post, keep_ties=keep_ties, hf_config=hf_config)
    if rep.issues and not drop_invalid:
        raise PolituneError(rep.error_line())
    if not rep.items:
        why = f" ({', '.join(f'{k}: {v}' for k, v in rep.dropped.items())} dropped)" if rep.dropped else ""
        raise PolituneError(f"{rep.source}: no valid rows{why}")
    return rep.items


# ---------------------------------------------------------------- save


def _flat(item: Record) -> dict[str, Any]:
    return item.to_dict()


def save(items: list[Record], path: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """Write records atomically; ``.jsonl`` (canonical), ``.jsonl.gz``, ``.csv`` or ``.parquet`` by suffix.

    CSV and Parquet store chat-message prompts and ``meta`` as JSON text (``load`` decodes them).
    ``summary`` (a transform's record) is written next to it as ``<stem>.summary.json``.
    """
    path = Path(path)
    sfx = suffix_of(path)
    if sfx not in (".jsonl", ".jsonl.gz", ".csv", ".parquet"):
        raise PolituneError(f"{path}: cannot write {sfx or '(no suffix)'!r}; expected .jsonl, .jsonl.gz, .csv or "
                            f".parquet")
    if not items:
        raise PolituneError(f"{path}: nothing to write (0 rows)")
    rows = [_flat(it) for it in items]
    try:
        out = atomic_write_bytes(path, table_bytes(rows, sfx))
        if summary is not None:
            atomic_write_json(summary_path(path), summary)
    except OSError as e:
        raise PolituneError(f"{path}: cannot write ({e.strerror or e})") from None
    return out


def summary_path(path: str | os.PathLike) -> Path:
    """``out.jsonl`` -> ``out.summary.json`` (the sidecar every transform writes)."""
    path = Path(path)
    name = path.name
    sfx = suffix_of(path)
    stem = name[: -len(sfx)] if sfx and name.lower().endswith(sfx) else path.stem
    return path.with_name(f"{stem}.summary.json")


def rejected_path(path: str | os.PathLike) -> Path:
    """``good.jsonl`` -> ``good.rejected.jsonl``."""
    p = summary_path(path)
    return p.with_name(p.name[: -len(".summary.json")] + ".rejected.jsonl")


# ---------------------------------------------------------------- datasets


def to_dataset(items: list[Record], *, conversational: bool = True, with_meta: bool = False):
    """A ``datasets.Dataset`` in TRL's format.

    Preference pairs -> ``prompt`` / ``chosen`` / ``rejected``; instruction examples -> ``prompt`` /
    ``completion``. ``conversational=True`` (default): ``prompt`` is a list of messages (system first when
    present, then user) and each answer is ``[{"role": "assistant", "content": ...}]``; ``False``: plain text
    (only for text prompts). ``with_meta=True`` adds ``id`` and ``meta`` (JSON text) columns, which TRL ignores
    only when its trainer is told to; they are off by default so the training columns are exactly TRL's.
    """
    from datasets import Dataset

    if not items:
        raise PolituneError("to_dataset: no records")
    pref = isinstance(items[0], PreferencePair)
    if any(isinstance(it, PreferencePair) != pref for it in items):
        raise PolituneError("to_dataset: mixed preference pairs and instruction examples")
    cols: dict[str, list] = {"prompt": []}
    names = ("chosen", "rejected") if pref else ("response",)
    for n in names:
        cols["completion" if n == "response" else n] = []
    for it in items:
        if conversational:
            cols["prompt"].append(chat_messages(it.prompt))
        else:
            if not isinstance(it.prompt, str):
                raise PolituneError(f"{it.id}: prompt: chat messages need conversational=True")
            cols["prompt"].append(it.prompt)
        for n in names:
            text = getattr(it, n)
            cols["completion" if n == "response" else n].append(
                [{"role": "assistant", "content": text}] if conversational else text)
    if with_meta:
        cols["id"] = [it.id for it in items]
        cols["meta"] = [json.dumps(it.meta, ensure_ascii=False, default=str) for it in items]
    return Dataset.from_dict(cols)
