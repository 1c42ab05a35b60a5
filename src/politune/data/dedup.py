"""Exact and near-duplicate rows: ``dedup`` and the MinHash-LSH grouping behind it."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from politune.data.schema import (
    Record,
    answers,
    prompt_text,
    record_transform,
)
from politune.errors import PolituneError

_WORD = re.compile(r"\w+")


def norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _key_text(it: Record, on: str) -> str:
    if on == "prompt":
        return prompt_text(it.prompt)
    if on == "all":
        return "\n".join([prompt_text(it.prompt)] + [t for _, t in answers(it)])
    raise PolituneError(f"dedup: on must be prompt or all, got {on!r}")


def _shingles(words: list[str], k: int = 3) -> set[int]:
    if len(words) < k:
        return {zlib.crc32(" ".join(words).encode())}
    return {zlib.crc32(" ".join(words[i : i + k]).encode()) for i in range(len(words) - k + 1)}


def near_duplicate_groups(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 64, bands: int = 16
) -> list[int]:
    """For each text, the index of the first text it is a near-duplicate of (Jaccard of word 3-grams >=
    ``threshold``, candidates from MinHash LSH, verified exactly), or its own index."""
    import numpy as np

    n = len(texts)
    sh = [_shingles(norm_words(t)) for t in texts]
    prime = (1 << 61) - 1
    gen = np.random.default_rng(12345)
    a = gen.integers(1, prime, num_perm, dtype=np.uint64)
    b = gen.integers(0, prime, num_perm, dtype=np.uint64)
    rows = max(1, num_perm // bands)
    sigs = np.empty((n, num_perm), dtype=np.uint64)
    for i, s in enumerate(sh):
        h = np.fromiter(s, dtype=np.uint64, count=len(s))[:, None]
        sigs[i] = ((h * a + b) % np.uint64(prime)).min(axis=0)  # wraps mod 2**64 first: still a valid hash
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    checked: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for i in range(n):
            buckets.setdefault(sigs[i, band * rows : (band + 1) * rows].tobytes(), []).append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            first = members[0]
            for j in members[1:]:
                pair = (first, j)
                if pair in checked or find(first) == find(j):
                    continue
                checked.add(pair)
                inter = len(sh[first] & sh[j])
                if inter / max(1, len(sh[first] | sh[j])) >= threshold:
                    ri, rj = find(first), find(j)
                    parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]


def dedup(
    items: Sequence[Record], *, on: str = "prompt", near: bool = True, threshold: float = 0.8
) -> list[Record]:
    """Drop rows whose ``on`` text (``prompt`` or ``all`` = prompt + answers) repeats an earlier row's: exactly
    (after lower-casing and collapsing punctuation / spaces) or, with ``near``, with word-3-gram Jaccard
    similarity >= ``threshold``. The first row of each group is kept, in order."""
    if not 0.0 < threshold <= 1.0:
        raise PolituneError(f"dedup: threshold must be in (0, 1], got {threshold}")
    texts = [_key_text(it, on) for it in items]
    keys = [" ".join(norm_words(t)) for t in texts]
    first: dict[str, int] = {}
    keep = []
    for i, k in enumerate(keys):
        if k in first:
            continue
        first[k] = i
        keep.append(i)
    if near and len(keep) > 1:
        groups = near_duplicate_groups([texts[i] for i in keep], threshold)
        keep = [keep[j] for j, g in enumerate(groups) if g == j]
    out = []
    for i in keep:
        c = items[i].replace()
        record_transform(c.meta, "dedup", on=on, near=near, threshold=threshold)
        out.append(c)
    return out
