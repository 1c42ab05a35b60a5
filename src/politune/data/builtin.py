"""The built-in preference sets, written for politune and shipped in the package (builtin/README.md).

Two raw files, one object per line with ``id, topic, axis, form, prompt, left, right, split``; ``left`` is the
economic-left / social-libertarian answer, ``right`` the economic-right / social-authoritarian one:

- ``ideology.jsonl``: 320 prompts on 32 topics in five forms; whole topics held out (``split == "heldout"``);
- ``statements.jsonl``: 425 questionnaire-style statements, each answered with a verdict and a reason from
  each side (form ``statement``; extra fields ``statement``, ``key``: the side that agrees, ``writer``); one
  writer's rows and the held-out topics' rows are held out.

Views (``load("builtin:NAME")``, optional ``:train`` / ``:heldout`` suffix or ``split=``):

- ``left``: chosen = left answer, rejected = right answer;  ``right``: the mirror;
- ``sft-left`` / ``sft-right``: instruction examples whose response is that side's answer;
- ``statements-left``, ``statements-right``, ``sft-statements-left``, ``sft-statements-right``: the same views
  of the statements file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.data.io import RawRow, read_jsonl_rows
from politune.data.schema import InstructionExample, PreferencePair
from politune.data.validate import DEFAULT_MAX_CHARS, check_fields
from politune.errors import PolituneError
from politune.measure.scorer import AXES

if TYPE_CHECKING:
    from politune.data.loaders import LoadReport

VIEWS = (
    "left",
    "right",
    "sft-left",
    "sft-right",
    "statements-left",
    "statements-right",
    "sft-statements-left",
    "sft-statements-right",
)
SPLITS = ("train", "heldout")
FORMS = ("opinion", "advice", "op-ed", "explain", "role", "statement")
_RAW_FIELDS = ("id", "topic", "axis", "form", "prompt", "left", "right", "split")


def builtin_path(name: str = "left") -> Path:
    """The raw file behind view ``name``: ``statements.jsonl`` for the statement views, else ``ideology.jsonl``."""
    file = "statements.jsonl" if "statements-" in name else "ideology.jsonl"
    return Path(__file__).parent / "builtin" / file


def _row_problems(raw: dict[str, Any], side: str, max_chars: int | None) -> list[tuple[str, str]]:
    """(field, problem) for one raw row of a built-in file, in its own field names."""
    probs: list[tuple[str, str]] = []
    for f in _RAW_FIELDS:
        if not isinstance(raw.get(f), str) or not raw[f].strip():
            probs.append((f, "missing field" if f not in raw else "expected a non-empty string"))
    if isinstance(raw.get("axis"), str) and raw["axis"] not in AXES:
        probs.append(("axis", f"expected economic or social, got {raw['axis']!r}"))
    if isinstance(raw.get("split"), str) and raw["split"] not in SPLITS:
        probs.append(("split", f"expected train or heldout, got {raw['split']!r}"))
    if isinstance(raw.get("form"), str) and raw["form"] not in FORMS:
        probs.append(("form", f"expected one of {', '.join(FORMS)}, got {raw['form']!r}"))
    if not probs:  # content checks (identical answers, length, lone surrogates) in raw field names
        other = "right" if side == "left" else "left"
        d = {
            "id": raw.get("id"),
            "prompt": raw.get("prompt"),
            "chosen": raw.get(side),
            "rejected": raw.get(other),
            "meta": None,
        }
        rename = {"chosen": side, "rejected": other}
        probs.extend(
            (rename.get(f, f), "identical to the other side's answer" if p == "identical to chosen" else p)
            for f, p in check_fields(d, "preference", True, max_chars)
        )
    return probs


def _raw_rows(name: str, split: str | None) -> list[RawRow]:
    if name not in VIEWS:
        raise PolituneError(
            f"builtin:{name}: unknown built-in set; expected one of "
            f"{', '.join('builtin:' + v for v in VIEWS)}"
        )
    if split is not None and split not in SPLITS:
        raise PolituneError(f"builtin:{name}: unknown split {split!r}; expected train or heldout")
    path = builtin_path(name)
    if not path.is_file():
        raise PolituneError(f"{path}: the built-in data file is missing from this installation")
    return read_jsonl_rows(path)


def builtin_report(
    name: str, split: str | None = None, max_chars: int | None = DEFAULT_MAX_CHARS
) -> LoadReport:
    """A :class:`~politune.data.loaders.LoadReport` for ``builtin:NAME`` (every raw row checked)."""
    from politune.data.loaders import LoadReport

    rows = _raw_rows(name, split)
    source = f"builtin:{name}" + (f":{split}" if split else "")
    sft = name.startswith("sft-")
    side = name.removeprefix("sft-").removeprefix("statements-")
    other = "right" if side == "left" else "left"
    kind = "instruction" if sft else "preference"
    rep = LoadReport(source=source, schema="builtin", kind=kind, rows_read=len(rows))
    file = f"politune/data/builtin/{builtin_path(name).name}"
    seen: dict[str, str] = {}
    for r in rows:
        raw = r.row or {}
        probs = [r.problem()] if r.row is None else _row_problems(raw, side, max_chars)
        rid = raw.get("id")
        if r.row is not None and isinstance(rid, str):
            if rid in seen:
                probs.append(("id", f"duplicate id {rid!r} (first at {seen[rid]})"))
            else:
                seen[rid] = r.loc
        if probs:
            rep.reject(r, probs)
            continue
        if split is not None and raw["split"] != split:
            continue
        meta = {
            "topic": raw["topic"],
            "axis": raw["axis"],
            "form": raw["form"],
            "split": raw["split"],
            "stance": side,
            "source": source,
            "provenance": {
                "schema": "builtin",
                "file": file,
                "line": int(r.loc.rsplit(":", 1)[1]),
            },
        }
        if sft:
            rep.items.append(InstructionExample(raw["id"], raw["prompt"], raw[side], meta))
        else:
            rep.items.append(PreferencePair(raw["id"], raw["prompt"], raw[side], raw[other], meta))
        rep.locs.append(r.loc)
    return rep
