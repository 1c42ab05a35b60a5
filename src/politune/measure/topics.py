"""Topic scores (PoliTune's per-question bars): open political questions on the held-out topics, answered by
each target, each answer scored with a :class:`~politune.measure.scorer.StanceScorer` (the offline scorer by
default, or an LLM judge), then per-axis and overall means with bootstrap CIs.

The built-in set (``questions/topics-v1.jsonl``) has 24 stance-neutral questions, 3 per held-out topic of the
built-in ideology data (never used to train the offline scorer or the built-in adapters). A question file of
your own is JSONL with ``id``, ``topic``, ``axis`` (economic | social) and ``question``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import parse_jsonl_objects
from politune.measure.results import AXES, TargetInfo, TopicQuestion, TopicsEntry
from politune.measure.scorer import StanceScorer
from politune.measure.stats import bootstrap_ci


def load_topic_questions(path: str | Path = "builtin") -> list[TopicQuestion]:
    """Read a topic-question JSONL file (``"builtin"``: the shipped 24 questions)."""
    if str(path) == "builtin":
        text = (resources.files("politune.measure") / "questions" / "topics-v1.jsonl").read_text("utf-8")
        where = "builtin topics-v1.jsonl"
    else:
        p = Path(path)
        if not p.is_file():
            raise PolituneError(f"{p}: topic question file not found")
        text, where = p.read_text("utf-8"), str(p)
    out: list[TopicQuestion] = []
    seen: set[str] = set()
    for n, d in parse_jsonl_objects(text, where):
        for field in ("id", "topic", "axis", "question"):
            if not isinstance(d.get(field), str) or not d[field].strip():
                raise PolituneError(f"{where}:{n}: {field}: expected a non-empty string")
        if d["axis"] not in AXES:
            raise PolituneError(f"{where}:{n}: axis: expected one of {', '.join(AXES)}, got {d['axis']!r}")
        if d["id"] in seen:
            raise PolituneError(f"{where}:{n}: id: {d['id']!r} is used twice")
        seen.add(d["id"])
        out.append(TopicQuestion(id=d["id"], topic=d["topic"], axis=d["axis"], question=d["question"]))
    if not out:
        raise PolituneError(f"{where}: no questions")
    return out


def _mean_ci(values: Sequence[float | None], seed: int) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    lo, hi = bootstrap_ci(vals, seed=seed)
    mean = sum(vals) / len(vals) if vals else None
    return {"mean": mean, "ci": [lo, hi] if vals else [None, None], "n": len(vals)}


def score_topic_answers(
    target: TargetInfo,
    questions: Sequence[TopicQuestion],
    answers: Sequence[str | None],
    scorer: StanceScorer,
    seed: int = 0,
) -> TopicsEntry:
    """One target's topics.json entry: per-question leans, per-axis and overall means with CIs. Unscored answers
    (refusals, judge failures, answers a server failed to give) are ``null`` and left out of the means."""
    if len(questions) != len(answers):
        raise PolituneError(f"{len(questions)} questions but {len(answers)} answers")
    scores: list[float | None] = [None] * len(questions)
    for axis in AXES:
        idx = [i for i, q in enumerate(questions) if q.axis == axis and answers[i] is not None]
        if not idx:
            continue
        vals = scorer.lean([answers[i] or "" for i in idx], axis, [questions[i].question for i in idx])
        for i, v in zip(idx, vals, strict=True):
            scores[i] = v
    axis_means = {
        a: {
            k: v
            for k, v in _mean_ci(
                [s for q, s in zip(questions, scores, strict=True) if q.axis == a], seed
            ).items()
            if k != "n"
        }
        for a in AXES
        if any(q.axis == a for q in questions)
    }
    overall = _mean_ci(scores, seed)
    return TopicsEntry.model_validate(
        {
            "target": target,
            "axis_means": axis_means,
            "mean": overall["mean"],
            "ci": overall["ci"],
            "coverage": overall["n"] / len(questions),
            "questions": [
                {**q.model_dump(), "answer": a, "score": s}
                for q, a, s in zip(questions, answers, scores, strict=True)
            ],
        }
    )
