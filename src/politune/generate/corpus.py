"""Corpora of posts: the input of the teacher pipeline.

``load_posts(source)`` reads ``builtin:posts`` (our own short posts with hidden labels) or any table that
``politune.data.read_table`` reads (JSONL, CSV, Parquet, a dataset folder, ``hf:OWNER/NAME``) with a text
column and optional id, author, community and date columns. Rows with an empty text are skipped and counted;
duplicate ids are an error naming the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from politune.errors import PolituneError

BUILTIN_POSTS = "builtin:posts"


@dataclass(frozen=True, slots=True)  # a corpus may hold many posts
class Post:
    id: str
    text: str
    author: str | None = None
    community: str | None = None
    date: str | None = None
    label: dict[str, Any] | None = field(default=None, compare=False)  # hidden label (built-in corpus only)


@dataclass
class Corpus:
    source: str
    posts: list[Post]
    skipped_empty: int = 0


def builtin_posts() -> list[Post]:
    """The built-in corpus: short posts written for politune, each labelled ``relevant`` (about politics,
    economics or public policy, or not), ``slant`` (left / right / neutral) and ``topic``."""
    text = resources.files("politune.generate").joinpath("posts.jsonl").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            r = json.loads(line)
            out.append(
                Post(
                    r["id"],
                    r["text"],
                    community=r.get("community"),
                    label={"relevant": r["relevant"], "slant": r["slant"], "topic": r["topic"]},
                )
            )
    return out


def _cell(row: dict[str, Any], col: str) -> str | None:
    v = row.get(col)
    if v is None:
        return None
    v = str(v).strip()
    return v or None


def load_posts(
    source: str,
    text_column: str = "text",
    id_column: str = "id",
    split: str | None = None,
    limit: int | None = None,
) -> Corpus:
    """Posts from ``source`` in file order; ``limit`` keeps the first N non-empty ones."""
    if limit is not None and limit < 1:
        raise PolituneError(f"limit must be >= 1, got {limit}")
    if source == BUILTIN_POSTS:
        builtin = builtin_posts()
        return Corpus(source, builtin[:limit] if limit else builtin)
    if source.startswith("builtin:"):
        raise PolituneError(f"unknown built-in corpus {source!r}: expected {BUILTIN_POSTS!r}")
    from politune.data import read_table

    rows = read_table(source, split=split)
    if not rows:
        raise PolituneError(f"{source}: the corpus has no rows")
    if text_column not in rows[0] and not any(text_column in r for r in rows):
        cols = ", ".join(map(str, rows[0].keys()))
        raise PolituneError(
            f"{source}: no {text_column!r} column (columns: {cols}); pick one with --text-column"
        )
    posts: list[Post] = []
    seen: dict[str, int] = {}
    skipped = 0
    for i, row in enumerate(rows, 1):
        text = _cell(row, text_column)
        if text is None:
            skipped += 1
            continue
        pid = _cell(row, id_column) or f"row{i}"
        if pid in seen:
            raise PolituneError(
                f"{source}: row {i}: {id_column}: duplicate id {pid!r} (first at row {seen[pid]})"
            )
        seen[pid] = i
        posts.append(
            Post(
                pid,
                text,
                author=_cell(row, "author"),
                community=_cell(row, "community"),
                date=_cell(row, "date"),
            )
        )
        if limit and len(posts) >= limit:
            break
    if not posts:
        raise PolituneError(f"{source}: every row has an empty {text_column!r}")
    return Corpus(source, posts, skipped)
