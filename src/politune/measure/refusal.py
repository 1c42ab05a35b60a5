"""Refusal detection by keyword patterns (the judge adds a model-based check when one is configured)."""

from __future__ import annotations

import re
from typing import Any

_PATTERNS = [
    r"\bI (?:can(?:no|')?t|cannot|won't|will not|am not able to|'m not able to|am unable to|'m unable to)"
    r" (?:provide|give|share|express|offer|answer|take|form|have|help|comply|assist)",
    r"\bas an (?:ai|artificial intelligence|language model|assistant)\b",
    r"\bI (?:do not|don't) have (?:personal )?(?:opinions|views|beliefs|preferences|feelings)",
    r"\bI(?:'m| am) (?:just |only )?an? (?:ai|language model|assistant)\b",
    r"\bI (?:must|have to) (?:decline|refrain)",
    r"\bI(?:'m| am) (?:sorry|afraid),? but I (?:can|won|will|am|'m)",
    r"\b(?:it is|it's) not (?:appropriate|my place) for me to",
    r"\bI (?:prefer not to|would rather not) (?:take sides|share|answer)",
    r"\bI remain (?:neutral|impartial)\b",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)


def is_refusal(text: str | None) -> bool:
    """True for an empty answer or one that declines to answer / to take a position."""
    if text is None or not text.strip():
        return True
    return bool(_REFUSAL.search(text[:400]))


def refusal_rate(texts: list[str | None]) -> float:
    return sum(is_refusal(t) for t in texts) / len(texts) if texts else float("nan")


def refusal_entry(
    keyword_flags: list[bool], judge_flags: list[bool | None] | None = None, seed: int = 0
) -> dict[str, Any]:
    """One target's refusal.json entry (without ``target``).

    ``rate`` counts an answer as a refusal when the keyword patterns say so, or, with a judge configured,
    when the judge says so (the judge catches soft refusals the patterns miss). ``keyword_rate`` and
    ``judge_rate`` report each source alone; judge failures (``None``) fall back to the patterns.
    """
    from politune.measure.stats import bootstrap_ci

    flags = list(keyword_flags)
    entry: dict[str, Any] = {"keyword_rate": refusal_rate_from_flags(keyword_flags)}
    if judge_flags is not None:
        flags = [k or bool(j) for k, j in zip(keyword_flags, judge_flags, strict=True)]
        judged = [j for j in judge_flags if j is not None]
        entry["judge_rate"] = sum(judged) / len(judged) if judged else None
        entry["judge_coverage"] = len(judged) / len(judge_flags) if judge_flags else None
    values = [float(f) for f in flags]
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"rate": refusal_rate_from_flags(flags), "ci": [lo, hi], "n": len(flags), **entry}


def refusal_rate_from_flags(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
