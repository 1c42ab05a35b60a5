"""Engine jobs -> HTTP answers: merge the events of a request's jobs, collect them into one result, or stream
them as OpenAI chunks (server-sent events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from politune.serve.engine import Event, EventSink, Job, TokenLogprob
from politune.serve.protocol import APIError, chat_logprob, completion_logprobs, error_body, sse, usage

Jobs = list[tuple[Job, EventSink]]
# shapes one streamed choice from (event kind, event, prompt index, n)
ChoiceShaper = Callable[[str, Event, int, int], dict[str, Any]]


@dataclass
class Collected:
    text: list[list[str]]
    logprobs: list[list[list[TokenLogprob]]]
    finish: list[list[str | None]]
    tokens: list[list[int]]
    prompt_logprobs: list[list[TokenLogprob] | None]


async def events(request: Request, jobs: Jobs) -> AsyncIterator[tuple[str, Any, int]]:
    """Merge the events of several jobs, yielding ``(kind, event, job_index)`` until every job ended. Cancels
    the jobs when the client disconnects or the consumer stops."""
    pending = {k: asyncio.ensure_future(sink.get()) for k, (_, sink) in enumerate(jobs)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending.values(), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if await request.is_disconnected():
                    return
                continue
            for k, fut in list(pending.items()):
                if fut not in done:
                    continue
                ev = fut.result()
                if ev[0] == "end":
                    del pending[k]
                    continue
                if ev[0] == "error":
                    yield ("error", ev[1], k)
                    return
                pending[k] = asyncio.ensure_future(jobs[k][1].get())
                yield (ev[0], ev, k)
    finally:
        for fut in pending.values():
            fut.cancel()
        for job, _ in jobs:
            job.cancelled = True


async def collect(request: Request, jobs: Jobs) -> Collected:
    n = jobs[0][0].params.n
    res = Collected(
        [[""] * n for _ in jobs],
        [[[] for _ in range(n)] for _ in jobs],
        [[None] * n for _ in jobs],
        [[0] * n for _ in jobs],
        [None for _ in jobs],
    )
    async for kind, ev, k in events(request, jobs):
        if kind == "delta":
            _, i, text, lps = ev
            res.text[k][i] += text
            if lps:
                res.logprobs[k][i].extend(lps)
        elif kind == "done":
            _, i, reason, ntok = ev
            res.finish[k][i], res.tokens[k][i] = reason, ntok
        elif kind == "prompt_logprobs":
            res.prompt_logprobs[k] = ev[1]
        elif kind == "error":
            raise APIError(500, ev, "server_error")
    if any(f is None for row in res.finish for f in row):
        raise APIError(
            499 if await request.is_disconnected() else 500, "generation did not finish", "server_error"
        )
    return res


@dataclass
class Stream:
    """One streamed answer: the chunk fields every event carries, and the usage report it may end with."""

    base: dict[str, Any]  # id, created, model, ... (with "object" set by the stream kind)
    n_prompt: int  # prompt tokens, for the usage chunk
    include_usage: bool


def _chat_choice(kind: str, ev: Event, p: int, n: int) -> dict[str, Any]:
    if kind == "delta":
        _, i, text, lps = ev
        lp = {"content": [chat_logprob(t) for t in lps]} if lps else None
        return {"index": i, "delta": {"content": text}, "logprobs": lp, "finish_reason": None}
    _, i, reason, _ = ev
    return {"index": i, "delta": {}, "logprobs": None, "finish_reason": reason}


def _completion_choice(kind: str, ev: Event, p: int, n: int) -> dict[str, Any]:
    if kind == "delta":
        _, i, text, lps = ev
        return {
            "index": p * n + i,
            "text": text,
            "finish_reason": None,
            "logprobs": completion_logprobs(lps, 0) if lps else None,
        }
    _, i, reason, _ = ev
    return {"index": p * n + i, "text": "", "finish_reason": reason, "logprobs": None}


async def _chunks(
    request: Request, jobs: Jobs, chunk: dict[str, Any], stream: Stream, choice: ChoiceShaper
) -> AsyncIterator[str]:
    """Each delta and finish as a chunk (``choice(kind, event, prompt index, n)`` shapes it), an error as an
    error body, then the usage (if asked) and ``[DONE]``."""
    n = jobs[0][0].params.n
    total = 0
    async for kind, ev, p in events(request, jobs):
        if kind == "error":
            yield sse(error_body(ev, "server_error"))
            break
        if kind not in ("delta", "done"):
            continue
        if kind == "done":
            total += ev[3]
        yield sse({**chunk, "choices": [choice(kind, ev, p, n)]})
    if stream.include_usage:
        yield sse({**chunk, "choices": [], "usage": usage(stream.n_prompt, total)})
    yield "data: [DONE]\n\n"


async def stream_chat(request: Request, jobs: Jobs, stream: Stream) -> AsyncIterator[str]:
    chunk = {**stream.base, "object": "chat.completion.chunk"}
    for i in range(jobs[0][0].params.n):
        yield sse(
            {
                **chunk,
                "choices": [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        )
    async for line in _chunks(request, jobs, chunk, stream, _chat_choice):
        yield line


def stream_completion(request: Request, jobs: Jobs, stream: Stream) -> AsyncIterator[str]:
    return _chunks(request, jobs, {**stream.base, "object": "text_completion"}, stream, _completion_choice)
