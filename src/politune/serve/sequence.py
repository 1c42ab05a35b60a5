"""What both schedulers of the serve engine share: a request's sampling settings, the :class:`Job` it becomes,
and :class:`Sequence`, one row of a batch (its sampling, stop strings, streamed text and log-probabilities).

A :class:`Sequence` only ever sees its own row of the logits, on the CPU, with its own ``torch.Generator``: what
it samples does not depend on which other rows shared the forward pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from politune.errors import PolituneError

if TYPE_CHECKING:
    from politune.serve.engine import Engine

SCHEDULERS = ("continuous", "static")


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    echo_logprobs: bool = False  # also score the prompt tokens (completions with echo + logprobs)


@dataclass
class Batching:
    """How the engine batches: ``continuous`` (iteration-level: rows join and leave at every decoding step, rows
    of different adapters share a forward pass) or ``static`` (the previous engine: one batch of same-adapter
    requests decoded to completion, then the next); at most ``max_batch_rows`` sequences decode together and
    at most ``max_queue`` requests wait."""

    scheduler: str = "continuous"
    max_batch_rows: int = 32  # docs/benchmarks.md: 32 vs 8 and 100 on smollm2, 2 CPU cores
    max_queue: int = 256

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise PolituneError(f"scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
        if self.max_batch_rows < 1 or self.max_queue < 1:
            raise PolituneError("max_batch_rows and max_queue must be positive integers")


@dataclass
class TokenLogprob:
    token_id: int
    token: str
    logprob: float | None  # None for the first prompt token (nothing conditions it)
    top: list[tuple[str, float]] = field(default_factory=list)


# What the engine reports about a job: ``("delta", index, text, logprobs | None)``, ``("prompt_logprobs",
# entries)``, ``("done", index, finish_reason, n_tokens)``, then ``("end", None)`` or ``("error", message)``.
Event: TypeAlias = tuple[Any, ...]


@dataclass
class Job:
    """One prompt of one request; its ``n`` sequences are decoded together. Events go to ``emit``."""

    adapter: str | None
    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[Event], None]
    cancelled: bool = False
    created: float = field(default_factory=time.monotonic)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_p, idx = torch.sort(probs, descending=True)
    keep = (torch.cumsum(sorted_p, -1) - sorted_p) < top_p
    keep[0] = True
    out = torch.zeros_like(probs)
    out[idx[keep]] = sorted_p[keep]
    return out / out.sum()


class Sequence:
    """One sequence being decoded: its tokens, text emitted so far, stop handling."""

    def __init__(self, engine: Engine, job: Job, index: int):
        self.engine, self.job, self.index = engine, job, index
        self.ids: list[int] = []
        self.n_sampled = 0
        self.emitted = ""
        self.finished = job.params.max_tokens == 0
        p = job.params
        self.gen = None
        if p.temperature > 0:
            self.gen = torch.Generator()
            seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little")
            self.gen.manual_seed(seed + index)
        self.holdback = max((len(s) for s in p.stop), default=1) - 1

    def step(self, logits: torch.Tensor) -> int:
        """Pick the next token from ``logits`` (1-D, float32), emit text; returns the token id."""
        p = self.job.params
        if p.temperature <= 0:
            tok = int(torch.argmax(logits))
        else:
            probs = _top_p_filter(torch.softmax(logits / p.temperature, -1), p.top_p)
            tok = int(torch.multinomial(probs, 1, generator=self.gen))
        lps = None
        if p.logprobs:
            lsm = torch.log_softmax(logits, -1)
            lps = [self.engine.token_logprob(tok, lsm, p.top_logprobs)]
        reason = None
        self.n_sampled += 1
        if tok in self.engine.eos_ids:
            reason = "stop"
        else:
            self.ids.append(tok)
        text = self.engine.tokenizer.decode(self.ids, skip_special_tokens=True)
        if reason is None and p.stop:
            hits = [text.find(s) for s in p.stop if s and s in text]
            if hits:
                text, reason = text[: min(hits)], "stop"
        if reason is None and self.n_sampled >= p.max_tokens:
            reason = "length"
        end = len(text)
        if reason is None:
            end = min(len(text), max(len(self.emitted), len(text) - self.holdback))
            while end > len(self.emitted) and text[end - 1] == "\ufffd":
                end -= 1  # an incomplete UTF-8 character: wait for its next byte
        delta = text[len(self.emitted) : end] if text.startswith(self.emitted) else ""
        self.emitted += delta
        if delta or lps:
            self.job.emit(("delta", self.index, delta, lps))
        if reason is not None:
            self.finished = True
            self.job.emit(("done", self.index, reason, self.n_sampled))
        return tok


def emit_prompt_logprobs(
    engine: Engine, jobs: list[Job], prompts: list[list[int]], logits: torch.Tensor, width: int
) -> None:
    """Echo: each job that asked for it gets the log-probabilities of its own prompt tokens (rows of ``logits``
    are the left-padded ``prompts``, ``n`` rows per job)."""
    r = 0
    for job in jobs:
        if job.params.echo_logprobs:
            p = prompts[r]
            start = width - len(p)
            lsm = torch.log_softmax(logits[r, start:-1], -1)
            entries = [TokenLogprob(p[0], engine.token_text(p[0]), None, [])]
            for k in range(1, len(p)):
                entries.append(engine.token_logprob(p[k], lsm[k - 1], job.params.top_logprobs))
            job.emit(("prompt_logprobs", entries))
        r += job.params.n
