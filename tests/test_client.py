"""politune.client against a real HTTP server on 127.0.0.1 (FastAPI + uvicorn in a thread), not a mock.

The server's behaviour is chosen by the model name; it counts calls per model and tracks peak concurrency:
- ``ok``: answers at once, echoing the last user message, with usage and optional logprobs;
- ``slow*``: sleeps ``delay`` seconds (from the message) before answering;
- ``flaky429``: 429 with ``Retry-After`` for the first 2 calls, then ok;
- ``flaky500``: 500 for the first 2 calls, then ok;
- ``always500``: always 500;  ``bad400``: always 400;  ``auth401``: always 401;
- ``empty``: a 200 with no choices.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import politune.client
from politune.client import ChatClient, ChatError, ChatFailed, ChatResult, ClientOptions
from politune.errors import PolituneError

FAST = (0.01, 2.0, 0.05)  # backoff for tests: real code path, small waits


class _State:
    def __init__(self):
        self.calls: Counter = Counter()
        self.in_flight: Counter = Counter()
        self.peak: Counter = Counter()
        self.starts: list[float] = []
        self.lock = threading.Lock()


def _make_app(state: _State):
    app = FastAPI()

    def completion(model: str, text: str, logprobs: bool) -> dict:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if logprobs:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": w,
                        "logprob": -0.5,
                        "bytes": None,
                        "top_logprobs": [{"token": w, "logprob": -0.5, "bytes": None}],
                    }
                    for w in text.split()
                ]
            }
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": 7, "completion_tokens": len(text.split()), "total_tokens": 0},
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        model = body["model"]
        with state.lock:
            state.calls[model] += 1
            n = state.calls[model]
            state.in_flight[model] += 1
            state.peak[model] = max(state.peak[model], state.in_flight[model])
            state.starts.append(time.monotonic())
        try:
            last = body["messages"][-1]["content"]
            if model.startswith("slow"):
                await asyncio.sleep(float(last.split()[0]))
            if model == "flaky429" and n <= 2:
                return JSONResponse(
                    {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0.2"}
                )
            if model == "flaky500" and n <= 2:
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if model == "always500":
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if model == "bad400":
                return JSONResponse({"error": {"message": "bad field"}}, status_code=400)
            if model == "auth401":
                return JSONResponse({"error": {"message": "no key"}}, status_code=401)
            if model == "empty":
                return {"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": []}
            return completion(model, f"echo: {last}", bool(body.get("logprobs")))
        finally:
            with state.lock:
                state.in_flight[model] -= 1

    return app


@pytest.fixture(scope="module")
def server():
    from politune.serve import run_app

    state = _State()
    with run_app(_make_app(state)) as url:
        yield url, state


@pytest.fixture
def fresh(server):
    url, state = server
    with state.lock:
        state.calls.clear()
        state.peak.clear()
        state.starts.clear()
    return url, state


def _msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_returns_text_usage_logprobs(fresh):
    url, state = fresh
    client = ChatClient(url, "ok", options=ClientOptions(cost_per_1k=(1.0, 2.0)))
    r = client.chat_sync(_msg("hello there"), max_tokens=5, logprobs=True, top_logprobs=1)
    assert isinstance(r, ChatResult) and r.ok
    assert r.text == "echo: hello there"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 3)
    assert [t["token"] for t in r.logprobs] == ["echo:", "hello", "there"]
    assert r.raw["model"] == "ok" and r.attempts == 1
    assert (
        client.usage.requests == 1 and client.usage.prompt_tokens == 7 and client.usage.completion_tokens == 3
    )
    assert client.usage.cost == pytest.approx((7 * 1.0 + 3 * 2.0) / 1000)
    assert state.calls["ok"] == 1


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """Every wait the client asks for (retry backoff, rate limit), recorded instead of slept: the tests check
    what the client decided, never how long anything took."""
    asked: list[float] = []

    async def record(delay: float) -> None:
        asked.append(delay)

    monkeypatch.setattr(politune.client, "_sleep", record)
    return asked


def test_retries_429_honouring_retry_after(fresh, waits):
    url, state = fresh
    client = ChatClient(url, "flaky429", options=ClientOptions(backoff=FAST, max_retries=4))
    r = client.chat_sync(_msg("x"))
    assert r.text == "echo: x" and r.attempts == 3
    assert state.calls["flaky429"] == 3 and client.usage.retries == 2
    # two waits of the server's Retry-After (0.2 s) although the backoff cap is 0.05 s
    assert len(waits) == 2 and all(w >= 0.2 for w in waits)


def test_retries_5xx_then_succeeds(fresh):
    url, state = fresh
    client = ChatClient(url, "flaky500", options=ClientOptions(backoff=FAST))
    r = client.chat_sync(_msg("y"))
    assert r.text == "echo: y" and r.attempts == 3 and state.calls["flaky500"] == 3


def test_gives_up_after_max_retries(fresh):
    url, state = fresh
    client = ChatClient(url, "always500", options=ClientOptions(backoff=FAST, max_retries=2))
    with pytest.raises(ChatFailed) as ei:
        client.chat_sync(_msg("z"))
    assert ei.value.error.status == 500 and ei.value.error.attempts == 3 and ei.value.error.retryable
    assert isinstance(ei.value, PolituneError) and "HTTP 500" in str(ei.value)
    assert state.calls["always500"] == 3 and client.usage.failures == 1


@pytest.mark.parametrize("model,status", [("bad400", 400), ("auth401", 401)])
def test_no_retry_on_other_4xx(fresh, model, status):
    url, state = fresh
    client = ChatClient(url, model, options=ClientOptions(backoff=FAST, max_retries=4))
    with pytest.raises(ChatFailed) as ei:
        client.chat_sync(_msg("z"))
    assert ei.value.error.status == status and not ei.value.error.retryable
    assert state.calls[model] == 1


def test_timeout_is_retried_then_recorded(fresh):
    url, state = fresh
    client = ChatClient(url, "slow-timeout", options=ClientOptions(timeout=0.2, max_retries=1, backoff=FAST))
    [r] = client.chat_many_sync([_msg("1.0 late")])
    assert isinstance(r, ChatError) and r.reason == "timeout" and r.attempts == 2
    assert state.calls["slow-timeout"] == 2


def test_empty_choices_is_an_error_not_a_crash(fresh):
    url, _ = fresh
    [r] = ChatClient(url, "empty").chat_many_sync([_msg("a")])
    assert isinstance(r, ChatError) and "no choices" in r.reason


def test_chat_many_order_failures_and_bounded_concurrency(fresh):
    url, state = fresh
    client = ChatClient(url, "slow", options=ClientOptions(concurrency=3, backoff=FAST, timeout=5))
    # delays in reverse so completion order differs from input order
    convs = [_msg(f"{0.05 * (8 - i):.2f} item{i}") for i in range(8)]
    seen: list[int] = []
    results = client.chat_many_sync(convs, on_result=lambda i, r: seen.append(i))
    assert [r.text.split()[-1] for r in results] == [f"item{i}" for i in range(8)]
    assert sorted(seen) == list(range(8)) and seen != list(range(8))
    assert state.peak["slow"] == 3

    bad = ChatClient(url, "bad400").chat_many_sync([_msg("a"), _msg("b")])
    assert all(isinstance(r, ChatError) and r.status == 400 for r in bad)


def test_concurrency_overlaps_requests_to_a_slow_server(fresh):
    url, state = fresh
    convs = [_msg(f"0.1 i{i}") for i in range(8)]
    results = ChatClient(url, "slow", options=ClientOptions(concurrency=8)).chat_many_sync(convs)
    assert all(r.ok for r in results)
    assert state.peak["slow"] >= 2  # the server saw requests in flight together, not one after another


def test_rate_limit_spaces_request_starts(fresh, monkeypatch):
    url, state = fresh
    clock = [100.0]  # the limiter's clock, advanced only by the waits it asks for

    async def wait(delay: float) -> None:
        clock[0] += delay

    monkeypatch.setattr(politune.client, "_sleep", wait)
    starts: list[float] = []
    limiter = politune.client._RateLimiter(20.0, clock=lambda: clock[0])

    async def start() -> None:
        await limiter.wait()
        starts.append(clock[0])

    async def main() -> None:
        for _ in range(6):
            await start()

    asyncio.run(main())
    assert starts == pytest.approx([100.0 + 0.05 * i for i in range(6)])
    client = ChatClient(url, "ok", options=ClientOptions(concurrency=8, rate_limit=20.0))
    assert all(r.ok for r in client.chat_many_sync([_msg(str(i)) for i in range(6)]))
    assert state.calls["ok"] == 6


def test_async_api_in_running_loop(fresh):
    url, _ = fresh
    client = ChatClient(url, "ok")

    async def main():
        a = await client.chat(_msg("a"))
        b = await client.chat_many([_msg("b"), _msg("c")])
        # the sync wrapper also works from inside a running loop (notebooks)
        c = client.chat_sync(_msg("d"))
        return a, b, c

    a, b, c = asyncio.run(main())
    assert (a.text, [x.text for x in b], c.text) == ("echo: a", ["echo: b", "echo: c"], "echo: d")


def test_env_configuration_and_bad_arguments(monkeypatch, fresh):
    url, _ = fresh
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("POLITUNE_API_BASE", url)
    assert ChatClient(model="ok").chat_sync(_msg("env")).text == "echo: env"
    monkeypatch.delenv("POLITUNE_API_BASE")
    with pytest.raises(PolituneError, match="base URL"):
        ChatClient(model="ok")
    with pytest.raises(PolituneError, match="model"):
        ChatClient(url, "")
    with pytest.raises(PolituneError, match="concurrency"):
        ChatClient(url, "ok", options=ClientOptions(concurrency=0))
    with pytest.raises(PolituneError, match="expected http"):
        ChatClient("localhost:8000", "ok")


def test_connection_refused_is_retried_and_recorded():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = ChatClient(
        f"http://127.0.0.1:{port}/v1", "ok", options=ClientOptions(max_retries=1, backoff=FAST, timeout=2)
    )
    [r] = client.chat_many_sync([_msg("a")])
    assert isinstance(r, ChatError) and r.reason.startswith("connection error") and r.attempts == 2


def test_backoff_delay_is_jittered_and_capped():
    client = ChatClient("http://127.0.0.1:1/v1", "m", options=ClientOptions(backoff=(0.5, 2.0, 3.0), seed=1))
    delays = [client.backoff_delay(n) for n in range(8)]
    assert all(0 <= d <= min(3.0, 0.5 * 2**n) for n, d in enumerate(delays))
    assert len(set(delays)) == len(delays)
    assert client.backoff_delay(0, retry_after=2.5) >= 2.5
    assert client.backoff_delay(0, retry_after=10_000) == 300.0
