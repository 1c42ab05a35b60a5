"""The append-only log of teacher answers (``OUT/cache.jsonl``) and the lock that keeps one run per folder.

Every answer is appended (one ``write`` + ``fsync``) under a key made of (stage, post id, post text, template
hash, teacher, attempt, rendered prompt, sampling settings); a re-run asks the teacher only for keys it lacks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import append_jsonl, read_jsonl_log, sha256_text
from politune.generate.corpus import Post
from politune.generate.templates import Template

CACHE_FILE = "cache.jsonl"
CACHE_VERSION = 1


def cache_key(
    stage: str,
    post: Post,
    template: Template,
    teacher: str,
    attempt: int,
    messages: list[dict[str, str]],
    gen: dict[str, Any],
) -> str:
    """What makes a teacher answer: stage, post, template, teacher, attempt, exact prompt, sampling."""
    blob = json.dumps(
        [
            CACHE_VERSION,
            stage,
            post.id,
            sha256_text(post.text),
            template.sha256,
            teacher,
            attempt,
            messages,
            gen,
        ],
        sort_keys=True,
        ensure_ascii=False,
    )
    return sha256_text(blob)[:40]


class Cache:
    """Append-only log of teacher answers; the first record of a key wins (exactly once)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl_log(path):
            if isinstance(rec, dict) and "key" in rec:
                self.entries.setdefault(rec["key"], rec)
        self.loaded = len(self.entries)
        self.added = 0

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add(self, record: dict[str, Any]) -> None:
        if record["key"] in self.entries:
            return
        append_jsonl(self.path, record)
        self.entries[record["key"]] = record
        self.added += 1


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".generate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PolituneError(f"{out}: another 'politune generate' run is writing here") from None
        yield out
    finally:
        os.close(fd)
