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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from politune.data.io import RawRow, read_rows, suffix_of, table_bytes
from politune.data.readers import (
    MAPPABLE,
    RowDict,
    detect_schema,
    parse_builtin,
    politune_dict,
    require_columns,
    shp_dicts,
    source_stem,
    webgpt_dicts,
)
from politune.data.schema import InstructionExample, PreferencePair, Record, chat_messages
from politune.data.validate import DEFAULT_MAX_CHARS, Issue, check_fields, token_issues
from politune.errors import PolituneError
from politune.fsutil import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

SCHEMAS = ("auto", "politune", "shp", "webgpt")


@dataclass
class LoadOptions:
    """The less common knobs of :func:`load`: a token-length check, the SHP / WebGPT schema filters and the hub
    dataset configuration."""

    tokenizer: Any = None  # with max_tokens: every text field must fit in max_tokens tokens
    max_tokens: int | None = None
    seed: int = 0  # shp: which pairs a post keeps under max_pairs_per_post
    min_score_ratio: float | None = 2.0  # shp: keep pairs whose score_ratio is at least this (None: all)
    max_pairs_per_post: int | None = 5  # shp: at most this many pairs per post_id (None: no cap)
    keep_ties: bool = False  # webgpt: keep equal-score comparisons
    hf_config: str | None = None  # hf: the dataset configuration name


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

    def reject(self, row: RawRow, problems: list[tuple[str, str]]) -> None:
        """Record a bad row: each (field, problem) as an issue, the row with its reasons in ``rejected``."""
        self.issues.extend(Issue(row.loc, f, p) for f, p in problems)
        self.rejected.append(
            {
                "location": row.loc,
                "errors": [f"{f}: {p}" for f, p in problems],
                "row": row.row if row.row is not None else row.raw,
            }
        )

    def error_line(self) -> str:
        first = str(self.issues[0])
        n_rows = len(self.rejected)
        more = (
            f" (+{len(self.issues) - 1} more problems in {n_rows} bad rows)" if len(self.issues) > 1 else ""
        )
        return (
            f"{first}{more}; `politune data validate {self.source}` lists them all, "
            f"--drop-invalid keeps the good rows"
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Building 100k+ small objects triggers the cyclic GC over and over (~40% of load time); the records
    hold no reference cycles, so pause it for the bulk load."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class _Read:
    """How to read one source: its schema (after detection), kind, column mapping and checks."""

    label: str
    schema: str
    kind: str
    mapping: dict[str, str]
    validate: bool
    max_chars: int | None
    options: LoadOptions


def load_report(
    src: str | os.PathLike[str],
    *,
    schema: str = "auto",
    mapping: dict[str, str] | None = None,
    split: str | None = None,
    validate: bool = True,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    options: LoadOptions | None = None,
    kind: str | None = None,
) -> LoadReport:
    """Read ``src`` and check every row; never raises for row-level problems (see :class:`LoadReport`).
    Arguments as for :func:`load` (less ``drop_invalid``), plus ``kind`` to force ``"preference"`` /
    ``"instruction"``."""
    s, opts = str(src), options or LoadOptions()
    if schema not in SCHEMAS:
        raise PolituneError(f"unknown schema {schema!r}; expected one of {', '.join(SCHEMAS)}")
    mapping = dict(mapping or {})
    bad_keys = sorted(set(mapping) - set(MAPPABLE))
    if bad_keys:
        raise PolituneError(
            f"--map: unknown field(s) {', '.join(bad_keys)}; expected some of {', '.join(MAPPABLE)}"
        )
    with _gc_paused():
        if s.startswith("builtin:"):
            from politune.data.builtin import builtin_report

            name, bsplit = parse_builtin(s, split)
            return builtin_report(name, bsplit, max_chars=max_chars if validate else None)
        rows, used_split = read_rows(s, split, opts.hf_config)
        schema, detected_kind = _schema_and_kind(rows, s, schema, mapping)
        how = _Read(s, schema, kind or detected_kind, mapping, validate, max_chars, opts)
        report = LoadReport(source=s, schema=schema, kind=how.kind, rows_read=len(rows))
        meta_split = split if used_split is None else None  # plain files: split= filters meta["split"]
        _collect(report, _row_dicts(rows, how, report.dropped), how, meta_split)
        if validate and opts.tokenizer is not None and opts.max_tokens is not None and report.items:
            _token_check(report, opts.tokenizer, opts.max_tokens)
        return report


def _schema_and_kind(rows: list[RawRow], label: str, schema: str, mapping: dict[str, str]) -> tuple[str, str]:
    if mapping and schema == "auto":
        schema = "politune"
    if schema == "auto":
        return detect_schema(rows, label)
    if schema == "politune":
        keys = {k for r in rows[:200] if r.row is not None for k in r.row}
        has_pair = bool({"chosen", "rejected"} & (keys | set(mapping)))
        has_response = bool({"response", "completion"} & keys) or "response" in mapping
        return schema, "instruction" if has_response and not has_pair else "preference"
    return schema, "preference"


def _row_dicts(rows: list[RawRow], how: _Read, dropped: dict[str, int]) -> list[RowDict]:
    """Every row as a record dict (or None with its problems), by the source's schema."""
    label, opts, mapping = how.label, how.options, how.mapping
    if how.schema == "shp":
        require_columns(rows, label, ["human_ref_A", "human_ref_B", "labels"])
        return shp_dicts(rows, label, opts.seed, opts.min_score_ratio, opts.max_pairs_per_post, dropped)
    if how.schema == "webgpt":
        require_columns(rows, label, ["question", "answer_0", "answer_1", "score_0", "score_1"])
        return webgpt_dicts(rows, label, opts.keep_ties, dropped)
    fields = ["prompt", "chosen", "rejected"] if how.kind == "preference" else ["prompt"]
    require_columns(rows, label, [mapping.get(f, f) for f in fields])
    if how.kind == "instruction" and "response" not in mapping:
        require_columns(
            rows,
            label,
            [
                "response"
                if any(r.row is not None and "response" in r.row for r in rows[:200])
                else "completion"
            ],
        )
    return [
        (r, None, [r.problem()]) if r.row is None else (r, politune_dict(r.row, how.kind, mapping), [])
        for r in rows
    ]


def _collect(report: LoadReport, dicts: list[RowDict], how: _Read, meta_split: str | None) -> None:
    """Check each row dict; the good ones become records in ``report.items``, the bad ones ``rejected``."""
    stem = source_stem(how.label)
    seen: dict[str, str] = {}
    for n, (r, d, probs) in enumerate(dicts, 1):
        if d is not None:
            if d.get("id") is None:
                d["id"] = f"{stem}-{n:06d}"
            elif isinstance(d["id"], int) and not isinstance(d["id"], bool):
                d["id"] = str(d["id"])
            probs = check_fields(d, how.kind, how.validate, how.max_chars)
            if isinstance(d["id"], str) and d["id"].strip():
                if d["id"] not in seen:
                    seen[d["id"]] = r.loc
                elif how.validate:
                    probs.append(("id", f"duplicate id {d['id']!r} (first at {seen[d['id']]})"))
        if probs or d is None:  # d is None only for an unreadable row, whose problem is in probs
            report.reject(r, probs)
            continue
        meta = d["meta"]
        meta.setdefault("source", how.label)
        if meta_split is not None and meta.get("split") != meta_split:
            report.dropped["split"] = report.dropped.get("split", 0) + 1
            continue
        if how.kind == "preference":
            item: Record = PreferencePair(d["id"], d["prompt"], d["chosen"], d["rejected"], meta)
        else:
            item = InstructionExample(d["id"], d["prompt"], d["response"], meta)
        report.items.append(item)
        report.locs.append(r.loc)


def _token_check(report: LoadReport, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> None:
    """Reject the records with a text field longer than ``max_tokens`` tokens."""
    tok_issues = token_issues(report.items, report.locs, tokenizer, max_tokens)
    if not tok_issues:
        return
    bad = {i.loc for i in tok_issues}
    report.issues.extend(tok_issues)
    by_loc = defaultdict(list)
    for i in tok_issues:
        by_loc[i.loc].append(f"{i.field}: {i.problem}")
    keep = []
    for it, loc in zip(report.items, report.locs, strict=True):
        if loc in bad:
            report.rejected.append({"location": loc, "errors": by_loc[loc], "row": it.to_dict()})
        else:
            keep.append((it, loc))
    report.items = [it for it, _ in keep]
    report.locs = [loc for _, loc in keep]


class LoadArgs(TypedDict, total=False):
    """The keyword arguments :func:`load` passes on to :func:`load_report` (defaults: there)."""

    schema: str  # "auto" or one of SCHEMAS
    mapping: dict[str, str] | None  # a row field's name for each MAPPABLE field
    split: str | None
    validate: bool
    max_chars: int | None  # longest text field (default DEFAULT_MAX_CHARS; None: no limit)
    options: LoadOptions | None


def load(
    src: str | os.PathLike[str], *, drop_invalid: bool = False, **args: Unpack[LoadArgs]
) -> list[Record]:
    """Load ``src`` as a list of :class:`PreferencePair` (or :class:`InstructionExample` for instruction data).

    ``split``: ``train`` / ``heldout`` for the built-in set (whole topics), the hub or ``save_to_disk`` split for
    ``hf:`` ids and folders (default ``train``), and a filter on ``meta["split"]`` for plain files.
    ``validate`` (default): any bad row raises one ``file:line: field: problem`` error, unless ``drop_invalid``
    (then bad rows are skipped; use :func:`load_report` to get them). ``validate=False`` keeps only the
    structural checks (missing fields, wrong types). ``options`` (:class:`LoadOptions`): a token-length check
    (``tokenizer`` + ``max_tokens``), the shp filters (``min_score_ratio`` / ``max_pairs_per_post`` / ``seed``),
    webgpt's ``keep_ties`` and the hub's ``hf_config``.
    """
    rep = load_report(src, **args)
    if rep.issues and not drop_invalid:
        raise PolituneError(rep.error_line())
    if not rep.items:
        why = f" ({', '.join(f'{k}: {v}' for k, v in rep.dropped.items())} dropped)" if rep.dropped else ""
        raise PolituneError(f"{rep.source}: no valid rows{why}")
    return rep.items


# ---------------------------------------------------------------- save


def _flat(item: Record) -> dict[str, Any]:
    return item.to_dict()


def save(
    items: Sequence[Record], path: str | os.PathLike[str], summary: dict[str, Any] | None = None
) -> Path:
    """Write records atomically; ``.jsonl`` (canonical), ``.jsonl.gz``, ``.csv`` or ``.parquet`` by suffix.

    CSV and Parquet store chat-message prompts and ``meta`` as JSON text (``load`` decodes them).
    ``summary`` (a transform's record) is written next to it as ``<stem>.summary.json``.
    """
    path = Path(path)
    sfx = suffix_of(path)
    if sfx not in (".jsonl", ".jsonl.gz", ".csv", ".parquet"):
        raise PolituneError(
            f"{path}: cannot write {sfx or '(no suffix)'!r}; expected .jsonl, .jsonl.gz, .csv or .parquet"
        )
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


def summary_path(path: str | os.PathLike[str]) -> Path:
    """``out.jsonl`` -> ``out.summary.json`` (the sidecar every transform writes)."""
    path = Path(path)
    name = path.name
    sfx = suffix_of(path)
    stem = name[: -len(sfx)] if sfx and name.lower().endswith(sfx) else path.stem
    return path.with_name(f"{stem}.summary.json")


def rejected_path(path: str | os.PathLike[str]) -> Path:
    """``good.jsonl`` -> ``good.rejected.jsonl``."""
    p = summary_path(path)
    return p.with_name(p.name[: -len(".summary.json")] + ".rejected.jsonl")


# ---------------------------------------------------------------- datasets


def to_dataset(items: list[Record], *, conversational: bool = True, with_meta: bool = False) -> Dataset:
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
    cols: dict[str, list[Any]] = {"prompt": []}
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
                [{"role": "assistant", "content": text}] if conversational else text
            )
    if with_meta:
        cols["id"] = [it.id for it in items]
        cols["meta"] = [json.dumps(it.meta, ensure_ascii=False, default=str) for it in items]
    return Dataset.from_dict(cols)
