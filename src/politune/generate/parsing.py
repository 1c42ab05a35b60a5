"""Reading the teacher's answers: a filter rating (strict JSON) and an instruction / positive / negative
triplet, and the checks a triplet must pass."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from politune.generate.config import WriteConfig


@dataclass(frozen=True)
class Rating:
    relevance: float
    topic: str
    slant: float  # -1 left .. 1 right


@dataclass(frozen=True)
class Triplet:
    instruction: str
    positive: str
    negative: str


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)


def _number(obj: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key!r} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{key!r} = {v} is outside [{lo:g}, {hi:g}]")
    return float(v)


def parse_rating(text: str) -> Rating:
    """Strict JSON: exactly one object (a ```json fence around it is allowed), with relevance 0-10, a non-empty
    topic and slant -1..1. Raises ``ValueError`` with the reason."""
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if not s:
        raise ValueError("empty answer")
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"'topic' must be a non-empty string, got {topic!r}")
    return Rating(_number(obj, "relevance", 0, 10), topic.strip()[:100], _number(obj, "slant", -1, 1))


_PART = re.compile(r"^[\s>*#_-]*(instruction|positive|negative)(?:\s+answer)?[*_]*\s*:[*_]*\s*", re.I | re.M)


def parse_triplet(text: str) -> Triplet:
    """``Instruction: ... Positive: ... Negative: ...`` (each label once, in any order, at a line start)."""
    parts: dict[str, str] = {}
    matches = list(_PART.finditer(text or ""))
    for i, m in enumerate(matches):
        label = m.group(1).lower()
        if label in parts:
            raise ValueError(f"{label.capitalize()}: appears twice")
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        parts[label] = text[m.end() : end].strip()
    missing = [k.capitalize() for k in ("instruction", "positive", "negative") if k not in parts]
    if missing:
        raise ValueError(f"missing part(s): {', '.join(m + ':' for m in missing)}")
    return Triplet(parts["instruction"], parts["positive"], parts["negative"])


def check_triplet(t: Triplet, cfg: WriteConfig) -> str | None:
    """The first problem with a triplet (without the stance check), or None."""
    from politune.measure.refusal import is_refusal

    if not cfg.min_instruction_chars <= len(t.instruction) <= cfg.max_instruction_chars:
        return (
            f"instruction has {len(t.instruction)} chars, expected "
            f"{cfg.min_instruction_chars}-{cfg.max_instruction_chars}"
        )
    for name, ans in (("positive", t.positive), ("negative", t.negative)):
        if not cfg.min_chars <= len(ans) <= cfg.max_chars:
            return f"{name} answer has {len(ans)} chars, expected {cfg.min_chars}-{cfg.max_chars}"
        if is_refusal(ans):
            return f"{name} answer is a refusal"
        if ans.casefold() == t.instruction.casefold():
            return f"{name} answer repeats the instruction"
    sim = difflib.SequenceMatcher(None, t.positive.casefold(), t.negative.casefold()).ratio()
    if sim > cfg.max_similarity:
        return f"positive and negative answers are {sim:.0%} similar (max {cfg.max_similarity:.0%})"
    return None
