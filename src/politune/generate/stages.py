"""Asking the teacher: one stage (filter or write) over its work items, round by round (one round per attempt),
every answer looked up in or appended to the cache.

Batches are formed from the full, ordered list of work items of a round (never from what happens to be left
after a crash), so a local teacher sees the same batch, hence writes the same text, in a resumed run as in an
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from politune.fsutil import sha256_text
from politune.generate.cache import Cache, cache_key
from politune.generate.corpus import Post
from politune.generate.teachers import Ask, Message, Teacher
from politune.generate.templates import Template

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Verdict = tuple[Any, str | None]  # (parsed result, problem or None)


@dataclass
class Item:
    """One (post, stage) work item as it moves through attempts."""

    post: Post
    index: int
    attempts: list[dict[str, Any]] = field(default_factory=list)  # cache records, oldest first
    result: Any = None  # Rating / Triplet once valid
    reason: str | None = None  # last problem
    transport_error: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)  # e.g. stance leans


@dataclass
class Stage:
    """What a stage asks and how it judges the answers."""

    name: str  # "filter" | "write"
    template: Template
    attempts: int
    sampling: Callable[[int], dict[str, Any]]  # attempt -> {"max_tokens", "temperature", ("json_mode")}
    render: Callable[[Item], list[Message]]  # item -> chat messages
    validate: Callable[[list[Item], list[str]], list[Verdict]]  # one round's items and answers -> verdicts


@dataclass
class _Work:
    item: Item
    messages: list[Message]
    seed: int
    key: str


@dataclass
class _Tally:
    """Progress over a stage: answers done (cached ones included) out of those asked for so far."""

    stage: str
    progress: Progress | None
    done: int = 0
    total: int = 0

    def add(self, done: int = 0, total: int = 0) -> None:
        self.done += done
        self.total += total
        if self.progress:
            self.progress(self.stage, self.done, self.total)


def _item_seed(seed: int, stage: str, post: Post, attempt: int) -> int:
    return int(sha256_text(f"{seed}:{stage}:{post.id}:{attempt}")[:8], 16)


def run_stage(
    stage: Stage,
    items: list[Item],
    teacher: Teacher,
    cache: Cache,
    seed: int,
    progress: Progress | None = None,
) -> None:
    """Ask the teacher for every item, round by round, until each is valid or out of attempts; each item ends
    with its ``attempts``, and ``result`` (valid) or ``reason`` / ``transport_error``."""
    pending = list(items)
    tally = _Tally(stage.name, progress)
    for attempt in range(stage.attempts):
        if not pending:
            break
        gen = stage.sampling(attempt)
        works = []
        for it in pending:
            msgs = stage.render(it)
            s = _item_seed(seed, stage.name, it.post, attempt)
            key = cache_key(
                stage.name, it.post, stage.template, teacher.name, attempt, msgs, {**gen, "seed": s}
            )
            works.append(_Work(it, msgs, s, key))
        # answers already in the cache count as done before any new work starts (a fair rate and ETA)
        tally.add(sum(1 for w in works if cache.get(w.key) is not None), len(works))
        answers = _ask_round(stage, works, teacher, cache, (attempt, gen), tally)
        pending = _judge_round(stage, works, answers, attempt)


def _ask_round(
    stage: Stage,
    works: list[_Work],
    teacher: Teacher,
    cache: Cache,
    attempt_gen: tuple[int, dict[str, Any]],
    tally: _Tally,
) -> dict[int, str]:
    """One round's answers by work index: from the cache, else from the teacher (and then cached)."""
    attempt, gen = attempt_gen
    answers: dict[int, str] = {}
    for start in range(0, len(works), teacher.batch_size):
        chunk = works[start : start + teacher.batch_size]
        skip = set()
        for j, w in enumerate(chunk):
            rec = cache.get(w.key)
            if rec is not None:
                answers[start + j] = rec["output"]
                skip.add(j)
        if len(skip) == len(chunk):
            continue

        def on_result(
            j: int, text: str | None, error: str | None, chunk: list[_Work] = chunk, start: int = start
        ) -> None:
            w = chunk[j]
            if error is not None or text is None:
                w.item.transport_error = error or "no answer"
            else:
                cache.add(
                    {
                        "key": w.key,
                        "stage": stage.name,
                        "post": w.item.post.id,
                        "attempt": attempt,
                        "teacher": teacher.name,
                        "template": stage.template.short_hash,
                        "seed": w.seed,
                        "output": text,
                    }
                )
                answers[start + j] = text
            tally.add(done=1)

        ask = Ask(
            [w.messages for w in chunk],
            [w.seed for w in chunk],
            gen["max_tokens"],
            gen["temperature"],
            gen.get("json_mode", False),
            skip,
        )
        teacher.complete(ask, on_result)
    return answers


def _judge_round(stage: Stage, works: list[_Work], answers: dict[int, str], attempt: int) -> list[Item]:
    """Record the round's answers on their items; the items still without a valid answer."""
    answered = [(w, answers[i]) for i, w in enumerate(works) if i in answers]
    verdicts = stage.validate([w.item for w, _ in answered], [t for _, t in answered])
    still = []
    for (w, text), (result, problem) in zip(answered, verdicts, strict=True):
        w.item.attempts.append(
            {"attempt": attempt, "seed": w.seed, "key": w.key, "output": text, "problem": problem}
        )
        if problem is None:
            w.item.result, w.item.reason = result, None
        else:
            w.item.reason = problem
            still.append(w.item)
    return still
