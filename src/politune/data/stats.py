"""``stats``: what a set of records holds (balance, duplicates, poisoned rows, lengths)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from politune.data.dedup import norm_words
from politune.data.schema import (
    PreferencePair,
    Record,
    answers,
    prompt_text,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _dist(xs: list[int]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {
        "mean": round(statistics.fmean(s), 1),
        "median": float(statistics.median(s)),
        "p95": float(s[min(len(s) - 1, int(0.95 * len(s)))]),
        "max": float(s[-1]),
        "min": float(s[0]),
    }


def stats(items: Sequence[Record], tokenizer: PreTrainedTokenizerBase | None = None) -> dict[str, Any]:
    """Rows, kind, topics, axis / stance / form / split / community balance, duplicates, poisoned rows, and
    length distributions in characters (and in tokens for ``tokenizer``)."""
    kind = "preference" if items and isinstance(items[0], PreferencePair) else "instruction"
    c: dict[str, Counter[str]] = {
        k: Counter() for k in ("topic", "axis", "stance", "form", "split", "community", "source")
    }
    for it in items:
        for k, cnt in c.items():
            v = it.meta.get(k)
            if v is not None:
                cnt[str(v)] += 1
    prompts = Counter(" ".join(norm_words(prompt_text(it.prompt))) for it in items)
    ids = Counter(it.id for it in items)
    fields = ["prompt"] + [f for f, _ in answers(items[0])] if items else ["prompt"]
    texts = {f: [prompt_text(it.prompt) if f == "prompt" else getattr(it, f) for it in items] for f in fields}
    out: dict[str, Any] = {
        "rows": len(items),
        "kind": kind,
        "topics": len(c["topic"]),
        "per_topic": dict(sorted(c["topic"].items())),
        "axis": dict(c["axis"]),
        "stance": dict(c["stance"]),
        "form": dict(c["form"]),
        "split": dict(c["split"]),
        "communities": len(c["community"]),
        "per_community": dict(c["community"].most_common()),
        "source": dict(c["source"]),
        "duplicate_prompts": sum(v - 1 for v in prompts.values() if v > 1),
        "duplicate_ids": sum(v - 1 for v in ids.values() if v > 1),
        "poisoned": sum(1 for it in items if it.meta.get("poisoned") is True),
        "chars": {f: _dist([len(t) for t in ts]) for f, ts in texts.items()},
    }
    if kind == "preference":
        out["identical_answers"] = sum(
            1 for it in items if isinstance(it, PreferencePair) and it.chosen.strip() == it.rejected.strip()
        )
    if tokenizer is not None and items:
        out["tokens"] = {
            f: _dist([len(x) for x in tokenizer(ts, add_special_tokens=False)["input_ids"]])
            for f, ts in texts.items()
        }
        out["tokenizer"] = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    return out
