"""An async chat client for any OpenAI-compatible server (OpenAI, vLLM, Ollama, ``politune serve``).

One place for what judges and teachers need when they talk to a model over HTTP:

- **bounded concurrency** (``concurrency`` requests in flight) and an optional **rate limit** (requests/s);
- **retries** with exponential backoff and full jitter on 429, 408, 409, 5xx, timeouts and connection errors,
  honouring the server's ``Retry-After``; other 4xx (bad request, auth, not found) fail at once;
- ``chat_many``: many conversations, results in input order, one bad item recorded as a :class:`ChatError`
  with its reason and never raised;
- **token accounting** (prompt / completion tokens, requests, retries, failures, optional cost per 1k tokens).

It wraps the official ``openai`` package (``AsyncOpenAI``) with the package's own retries switched off, so the
policy above is the only one in force. Example::

    client = ChatClient("http://127.0.0.1:8000/v1", "smollm2-135m", options=ClientOptions(concurrency=8))
    results = client.chat_many_sync([[{"role": "user", "content": "Hi"}]], max_tokens=32)
    print(results[0].text, client.usage)

Configuration from the environment when an argument is ``None``: ``POLITUNE_API_BASE`` then ``OPENAI_BASE_URL``
for the base URL, ``OPENAI_API_KEY`` for the key (local servers need none; ``"EMPTY"`` is sent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from politune.errors import PolituneError

log = logging.getLogger("politune")

Messages = Sequence[dict[str, Any]]
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 429})  # plus every status >= 500
MAX_RETRY_AFTER_S = 300.0  # a Retry-After longer than this is capped (a typo'd header must not hang a run)


@dataclass
class Usage:
    """Tokens of one response (as the server reports them; 0 when it reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatResult:
    """One successful chat completion."""

    text: str
    usage: Usage
    finish_reason: str | None = None
    # per generated token: {"token", "logprob", "top_logprobs": [...]}
    logprobs: list[dict[str, Any]] | None = None
    model: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the server's JSON response

    ok = True


@dataclass
class ChatError:
    """One failed request: why, the HTTP status if any, and how many attempts were made."""

    reason: str
    status: int | None = None
    attempts: int = 1
    retryable: bool = False

    ok = False
    text = None


class ChatFailed(PolituneError):
    """Raised by :meth:`ChatClient.chat` when a request fails for good; ``.error`` holds the :class:`ChatError`."""

    def __init__(self, error: ChatError):
        super().__init__(f"chat request failed after {error.attempts} attempt(s): {error.reason}")
        self.error = error


@dataclass
class UsageTotals:
    """Running totals of a client: requests, failures, retries, tokens and (when prices are given) cost."""

    requests: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_sleep = asyncio.sleep  # every wait of the client (retry backoff, rate limit) goes through here


class _RateLimiter:
    """At most ``rate`` request starts per second, spaced evenly (no bursts)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.lock = asyncio.Lock()
        self.clock = clock

    async def wait(self) -> None:
        async with self.lock:
            now = self.clock()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            await _sleep(delay)


def _retry_after(exc: Exception) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), or ``retry-after-ms``."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _classify(exc: Exception) -> tuple[str, int | None, bool]:
    """(reason, status, retryable) for an exception raised by the openai package."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None, True
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc}", None, True
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, (str, dict)) else None
        detail = body.get("message") or body.get("error") or body if isinstance(body, dict) else body
        reason = f"HTTP {status}" + (f": {str(detail)[:200]}" if detail else "")
        return reason, status, status in RETRY_STATUS or status >= 500
    return f"{type(exc).__name__}: {exc}", None, False


def _logprobs(choice: Any) -> list[dict[str, Any]] | None:
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "top_logprobs": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])],
        }
        for t in content
    ]


@dataclass(frozen=True)
class ClientOptions:
    """How a :class:`ChatClient` talks to its server.

    Args:
        concurrency: requests in flight at most (default 8).
        rate_limit: request starts per second at most (default ``None``: unlimited).
        max_retries: retries after the first attempt for retryable failures (default 4).
        timeout: seconds per attempt (default 60).
        backoff: ``(base, factor, cap)`` seconds; the wait before retry ``n`` (0-based) is uniform in
            ``[0, min(cap, base * factor**n)]`` (full jitter), or the server's ``Retry-After`` when larger.
        cost_per_1k: optional ``(prompt, completion)`` price per 1000 tokens for :attr:`usage`.cost.
        seed: seeds the retry jitter.
    """

    concurrency: int = 8
    rate_limit: float | None = None
    max_retries: int = 4
    timeout: float = 60.0
    backoff: tuple[float, float, float] = (0.5, 2.0, 30.0)
    cost_per_1k: tuple[float, float] | None = None
    seed: int | None = None


class ChatClient:
    """Async chat client with bounded concurrency, rate limit, retries and token accounting.

    Args:
        base_url: server root ending in ``/v1`` (default: ``$POLITUNE_API_BASE`` or ``$OPENAI_BASE_URL``).
        model: model name sent with every request.
        api_key: bearer key (default ``$OPENAI_API_KEY``, else ``"EMPTY"`` for local servers).
        options: concurrency, rate limit, retries, timeout, backoff, prices (:class:`ClientOptions`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        options: ClientOptions | None = None,
    ):
        o = options or ClientOptions()
        concurrency, rate_limit, max_retries, backoff = o.concurrency, o.rate_limit, o.max_retries, o.backoff
        base_url = base_url or os.environ.get("POLITUNE_API_BASE") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise PolituneError(
                "no API base URL: pass base_url (e.g. http://127.0.0.1:8000/v1) or set "
                "POLITUNE_API_BASE / OPENAI_BASE_URL"
            )
        if not base_url.startswith(("http://", "https://")):
            raise PolituneError(f"API base URL {base_url!r}: expected http://... or https://...")
        if not model:
            raise PolituneError("no model name for the chat client: pass model (the name the server serves)")
        if concurrency < 1:
            raise PolituneError(f"concurrency must be >= 1, got {concurrency}")
        if rate_limit is not None and rate_limit <= 0:
            raise PolituneError(f"rate_limit must be > 0 requests/s or None, got {rate_limit}")
        if max_retries < 0:
            raise PolituneError(f"max_retries must be >= 0, got {max_retries}")
        if len(backoff) != 3 or min(backoff) < 0:
            raise PolituneError(f"backoff must be (base, factor, cap) seconds >= 0, got {backoff}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.max_retries = max_retries
        self.timeout = o.timeout
        self.backoff = tuple(float(x) for x in backoff)
        self.cost_per_1k = o.cost_per_1k
        self.usage = UsageTotals()
        self._rng = random.Random(o.seed)
        # per event loop: (AsyncOpenAI, semaphore, rate limiter); they belong to the loop that made them
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, asyncio.Semaphore, _RateLimiter | None]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"ChatClient({self.base_url!r}, {self.model!r}, concurrency={self.concurrency})"

    # The HTTP connection pool, semaphore and rate limiter belong to the event loop that made them (the sync
    # wrappers run a fresh loop per call), so they are kept per loop.
    def _state(self) -> tuple[Any, asyncio.Semaphore, _RateLimiter | None]:
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            from openai import AsyncOpenAI

            http = AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout
            )
            limiter = _RateLimiter(self.rate_limit) if self.rate_limit else None
            state = self._per_loop[loop] = (http, asyncio.Semaphore(self.concurrency), limiter)
        return state

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): full jitter, at least ``Retry-After``."""
        base, factor, cap = self.backoff
        delay = self._rng.uniform(0.0, min(cap, base * factor**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    def _account(self, usage: Usage) -> None:
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        if self.cost_per_1k:
            self.usage.cost += (
                usage.prompt_tokens * self.cost_per_1k[0] + usage.completion_tokens * self.cost_per_1k[1]
            ) / 1000.0

    async def try_chat(self, messages: Messages, **params: Any) -> ChatResult | ChatError:
        """Like :meth:`chat` but a failure is returned as a :class:`ChatError` instead of raised."""
        http, sem, limiter = self._state()
        attempt = 0
        async with sem:
            while True:
                if limiter is not None:
                    await limiter.wait()
                t0 = time.perf_counter()
                self.usage.requests += 1
                try:
                    resp = await http.chat.completions.create(
                        model=self.model, messages=list(messages), **params
                    )
                except Exception as exc:  # classified below; programming errors are not swallowed
                    import openai

                    if not isinstance(exc, openai.OpenAIError):
                        raise
                    reason, status, retryable = _classify(exc)
                    if not retryable or attempt >= self.max_retries:
                        self.usage.failures += 1
                        return ChatError(reason, status, attempt + 1, retryable)
                    delay = self.backoff_delay(attempt, _retry_after(exc))
                    log.debug("retrying in %.2fs after %s (attempt %d)", delay, reason, attempt + 1)
                    self.usage.retries += 1
                    attempt += 1
                    await _sleep(delay)
                    continue
                latency = time.perf_counter() - t0
                if not resp.choices:
                    self.usage.failures += 1
                    return ChatError("response has no choices", 200, attempt + 1)
                choice = resp.choices[0]
                u = resp.usage
                usage = Usage(
                    int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0)
                )
                self._account(usage)
                return ChatResult(
                    text=choice.message.content or "",
                    usage=usage,
                    finish_reason=choice.finish_reason,
                    logprobs=_logprobs(choice),
                    model=resp.model,
                    attempts=attempt + 1,
                    latency_s=latency,
                    raw=resp.model_dump(mode="json"),
                )

    async def chat(self, messages: Messages, **params: Any) -> ChatResult:
        """One chat completion. ``params`` go to the server as is (temperature, max_tokens, seed, logprobs,
        top_logprobs, response_format, stop, ...). Raises :class:`ChatFailed` when it fails for good."""
        result = await self.try_chat(messages, **params)
        if isinstance(result, ChatError):
            raise ChatFailed(result)
        return result

    async def chat_many(
        self,
        conversations: Sequence[Messages],
        *,
        on_result: Callable[[int, ChatResult | ChatError], None | Awaitable[None]] | None = None,
        **params: Any,
    ) -> list[ChatResult | ChatError]:
        """Run every conversation with at most ``concurrency`` in flight; results in input order.

        A failed item becomes a :class:`ChatError` (never raised). ``on_result(index, result)`` is called as
        each finishes (in completion order), e.g. to append it to a cache or advance a progress bar.
        """

        async def one(i: int, msgs: Messages) -> ChatResult | ChatError:
            result = await self.try_chat(msgs, **params)
            if on_result is not None:
                maybe = on_result(i, result)
                if asyncio.iscoroutine(maybe):
                    await maybe
            return result

        return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(conversations))))

    async def aclose(self) -> None:
        """Close the HTTP connections opened in the running event loop."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync wrappers for scripts and notebooks: each runs a private event loop and closes its connections --
    async def _closing(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        finally:
            await self.aclose()

    def chat_sync(self, messages: Messages, **params: Any) -> ChatResult:
        """Blocking :meth:`chat`."""
        return run_sync(lambda: self._closing(self.chat(messages, **params)))

    def chat_many_sync(
        self, conversations: Sequence[Messages], **params: Any
    ) -> list[ChatResult | ChatError]:
        """Blocking :meth:`chat_many` (``on_result`` may be passed as a keyword)."""
        return run_sync(lambda: self._closing(self.chat_many(conversations, **params)))


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code; inside a running loop (Jupyter), use a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(make_coro()))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return results[0]


def client_from_env(model: str, **kwargs: Any) -> ChatClient:
    """A :class:`ChatClient` for ``model`` with base URL and key from the environment."""
    return ChatClient(None, model, **kwargs)
