"""Solvers shared by the measures: how a target's answers are produced (see ``politune.measure.task``).

- :class:`Generate`: a free answer per sample (greedy by default; local model or HTTP server);
- :class:`Perplexity`: perplexity of each sample's text (local model only);
- :class:`Route`: a different solver per sample ``kind`` (e.g. topic answers and quality answers of
  different lengths, or answers and perplexities in one task);
- :class:`Cached`: any one-output-per-sample solver, with answers appended to a JSONL log as each batch
  finishes, keyed by target, solver and sample: a killed run resumes where it stopped, a re-run regenerates
  nothing, and tasks that ask for the same answers share them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import append_jsonl, read_jsonl_log, sha256_text
from politune.measure.task import Context, Sample, Solver


@dataclass(frozen=True)
class Generate:
    """Answer each sample's ``input`` as a user turn (the target's system prompt applies)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0

    @property
    def name(self) -> str:
        mode = "greedy" if self.temperature == 0 else f"temperature={self.temperature}"
        return f"generate(max_new_tokens={self.max_new_tokens}, {mode}, seed={self.seed})"

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> list[str | None]:
        if not samples:
            return []
        out = ctx.backend.generate(
            [s.input for s in samples],
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
        )
        ctx.progress(len(samples))
        return list(out)


@dataclass(frozen=True)
class Perplexity:
    """Perplexity of each sample's ``input`` as plain text (no chat template)."""

    max_length: int = 512
    name: str = "perplexity"

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> list[float]:
        if not samples:
            return []
        from politune.measure.compass.backends import HTTPBackend

        if isinstance(ctx.backend, HTTPBackend):
            raise PolituneError(
                f"target {ctx.target.name}: perplexity needs a local model (not an HTTP server)"
            )
        return ctx.backend.perplexities([s.input for s in samples], max_length=self.max_length)


@dataclass(frozen=True)
class Route:
    """One solver per sample kind; outputs come back in the samples' order."""

    by_kind: Mapping[str, Solver]

    @property
    def name(self) -> str:
        return "route(" + ", ".join(f"{k}: {s.name}" for k, s in self.by_kind.items()) + ")"

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> list[Any]:
        out: list[Any] = [None] * len(samples)
        for kind, solver in self.by_kind.items():
            idx = [i for i, s in enumerate(samples) if s.kind == kind]
            if idx:
                for i, o in zip(idx, solver.solve(ctx, [samples[i] for i in idx]), strict=True):
                    out[i] = o
        missing = {s.kind for s in samples} - set(self.by_kind)
        if missing:
            raise PolituneError(
                f"no solver for sample kind(s) {sorted(missing)}: expected {list(self.by_kind)}"
            )
        return out


@dataclass
class AnswerLog:
    """An append-only JSONL log of outputs: ``{"key", "target", "set", "id", "value"}`` per line (a torn last
    line, from a kill mid-write, is skipped and that answer produced again)."""

    path: Path | None
    done: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path is not None:
            for rec in read_jsonl_log(self.path):
                if not isinstance(rec, dict):
                    continue
                key, kind, sid = rec.get("key"), rec.get("set"), rec.get("id")
                if isinstance(key, str) and isinstance(kind, str) and isinstance(sid, str):
                    self.done[(key, kind, sid)] = rec.get("value")

    def add(self, key: str, target: str, kind: str, sid: str, value: Any) -> None:
        self.done[(key, kind, sid)] = value
        if self.path is not None:
            append_jsonl(self.path, {"key": key, "target": target, "set": kind, "id": sid, "value": value})


@dataclass(frozen=True)
class Cached:
    """``inner`` (one output per sample), logging each batch to ``log``; outputs already logged are reused.
    Failed outputs (``None``: a server error) are not logged, so the next run asks again."""

    inner: Solver
    log: AnswerLog

    @property
    def name(self) -> str:
        return self.inner.name

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> list[Any]:
        key = sha256_text(json.dumps([ctx.target.to_dict(), self.inner.name], sort_keys=True))[:16]
        out: dict[tuple[str, str], Any] = {}
        todo = []
        for s in samples:
            if (key, s.kind, s.id) in self.log.done:
                out[(s.kind, s.id)] = self.log.done[(key, s.kind, s.id)]
            else:
                todo.append(s)
        for start in range(0, len(todo), ctx.batch_size):
            chunk = todo[start : start + ctx.batch_size]
            for s, value in zip(chunk, self.inner.solve(ctx, chunk), strict=True):
                out[(s.kind, s.id)] = value
                if value is not None:
                    self.log.add(key, ctx.target.name, s.kind, s.id, value)
        return [out[(s.kind, s.id)] for s in samples]
