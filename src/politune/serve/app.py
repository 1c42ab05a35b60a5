"""The OpenAI-compatible HTTP app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` and the
comparison page at ``/``.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the matching status:
400 bad request (malformed JSON, invalid field, limit exceeded), 401 missing/wrong key, 404 unknown model or
path, 413 body too large, 429 queue full, 500 generation failure. Nothing in a request becomes a path: the
``model`` field is looked up in the server's own registry of names.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from politune.measure.results import CompassResult, load_result, parse_result
from politune.serve.engine import BASE, Engine, EventSink, Job, QueueFull, SamplingParams, TokenLogprob

log = logging.getLogger("politune")


@dataclass
class ServeLimits:
    """Request limits. Defaults are documented in docs/serve.md."""

    max_body_bytes: int = 1_000_000  # request body size (413 above)
    max_tokens: int = 1024  # largest max_tokens a request may ask for (400 above)
    default_max_tokens: int = 256  # when a request gives none
    max_n: int = 8  # choices per request
    max_top_logprobs: int = 20  # OpenAI's own limit for chat
    max_queue: int = 256  # waiting requests (429 above)
    max_batch_rows: int = 8  # sequences decoded together
    max_prompt_tokens: int | None = None  # None: the model's context minus max_tokens


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---- request schemas --------------------------------------------------------------------------------------------
class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if isinstance(v, str):
            v = [v]
        if v is not None and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict] | None = None


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)
    tools: list | None = None
    response_format: dict | None = None


class CompletionRequest(_Common):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


def _message_text(m: ChatMessage) -> str:
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    parts = []
    for part in m.content:
        if part.get("type") != "text":
            raise APIError(400, f"content part type {part.get('type')!r} is not supported (text only)",
                           param="messages")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


# ---- the app ----------------------------------------------------------------------------------------------------
def create_app(model: str, adapters: dict[str, str] | None = None, api_key: str | None = None,
               limits: ServeLimits | None = None, *, compass: str | Path | dict | None = None,
               device: str = "auto", dtype: str = "auto", served_name: str | None = None, engine: Engine | None = None):
    """Build the FastAPI app: loads ``model`` once, attaches each ``adapters`` entry (name -> PEFT adapter
    directory) once, and starts the engine's worker thread (stopped at app shutdown).

    ``api_key``: when set, every ``/v1`` request needs ``Authorization: Bearer KEY``. ``compass``: a
    ``compass.json`` (path or parsed dict) whose points the comparison page shows.
    """
    limits = limits or ServeLimits()
    compass_points = load_compass_points(compass) if compass is not None else {}
    eng = engine or Engine(model, adapters, device=device, dtype=dtype, max_batch_rows=limits.max_batch_rows,
                           max_queue=limits.max_queue, served_name=served_name)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(eng.close)

    app = FastAPI(title="politune serve", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.engine = eng
    app.state.limits = limits
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        extra = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status,
                            headers=extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send 'Authorization: Bearer KEY'", "authentication_error",
                           code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "incorrect API key", "authentication_error", code="invalid_api_key")

    async def parse(request: Request, schema: type[BaseModel]):
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"request body is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object")
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise APIError(400, f"{loc}: {err['msg']}", param=loc or None) from None

    def model_entry(name: str, adapter: str | None) -> dict:
        info = eng.adapters.get(adapter) if adapter else None
        extra = {"kind": "adapter" if info else "base", "base_model": eng.served_name,
                 "adapter_hash": info.hash if info else None, "lora_rank": info.rank if info else None,
                 "card": info.card if info else None,
                 "compass": compass_points.get(adapter if info else BASE)}
        return {"id": name, "object": "model", "created": created, "owned_by": "politune",
                "root": eng.served_name if info is None else str(info.name),
                "parent": eng.served_name if info else None, "politune": extra}

    created = int(time.time())

    @app.get("/", include_in_schema=False)
    async def index():
        page = resources.files("politune.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                           "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                           "script-src 'self' 'unsafe-inline'"})

    @app.get("/health", include_in_schema=False)
    async def health():
        return {"status": "ok", "queue": eng.queue_length, "stats": dict(eng.stats)}

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        data = [model_entry(eng.served_name, None)] + [model_entry(n, n) for n in eng.adapters]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{name}")
    async def get_model(name: str, request: Request):
        check_key(request)
        adapter = eng.resolve(name)
        if adapter is False:
            raise _unknown_model(name)
        return model_entry(name if adapter else eng.served_name, adapter)

    def _unknown_model(name: str) -> APIError:
        return APIError(404, f"The model {name[:100]!r} does not exist; served: {', '.join(eng.model_names())}",
                        "not_found_error", param="model", code="model_not_found")

    def sampling(req: _Common, logprobs: bool, top_logprobs: int, echo: bool, n_prompt: int) -> SamplingParams:
        if req.presence_penalty or req.frequency_penalty or req.logit_bias:
            raise APIError(400, "presence_penalty, frequency_penalty and logit_bias are not supported",
                           param="presence_penalty")
        mt = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        if mt is None:
            mt = limits.default_max_tokens
        if mt > limits.max_tokens:
            raise APIError(400, f"max_tokens is {mt}; this server allows at most {limits.max_tokens}",
                           param="max_tokens")
        if req.n > limits.max_n:
            raise APIError(400, f"n is {req.n}; this server allows at most {limits.max_n}", param="n")
        if top_logprobs > limits.max_top_logprobs:
            raise APIError(400, f"top_logprobs is {top_logprobs}; at most {limits.max_top_logprobs}",
                           param="top_logprobs")
        cap = limits.max_prompt_tokens or (eng.max_context - mt)
        if n_prompt > cap:
            raise APIError(400, f"the prompt has {n_prompt} tokens; with max_tokens={mt} at most {cap} fit",
                           param="messages", code="context_length_exceeded")
        if mt == 0 and not echo:
            raise APIError(400, "max_tokens must be at least 1 (0 only with echo)", param="max_tokens")
        return SamplingParams(max_tokens=mt, temperature=req.temperature, top_p=req.top_p, stop=req.stop or [],
                              seed=req.seed, n=req.n, logprobs=logprobs, top_logprobs=top_logprobs,
                              echo_logprobs=echo)

    def resolve(req: _Common) -> str | None:
        adapter = eng.resolve(req.model)
        if adapter is False:
            raise _unknown_model(req.model)
        return adapter

    def record(adapter: str | None) -> dict:
        info = eng.adapters.get(adapter) if adapter else None
        return {"base_model": eng.served_name, "adapter": adapter, "adapter_hash": info.hash if info else None}

    def headers(adapter: str | None) -> dict:
        info = eng.adapters.get(adapter) if adapter else None
        return {"X-Politune-Adapter": adapter or "", "X-Politune-Adapter-Hash": info.hash if info else ""}

    def start_jobs(adapter, prompt_ids_list: list[list[int]], params: SamplingParams) -> list[tuple[Job, EventSink]]:
        loop = asyncio.get_running_loop()
        started = []
        try:
            for ids in prompt_ids_list:
                sink = EventSink(loop)
                job = Job(adapter, ids, params, sink.emit)
                eng.submit(job)
                started.append((job, sink))
        except QueueFull as e:
            for job, _ in started:
                job.cancelled = True
            raise APIError(429, str(e), "rate_limit_error", code="queue_full") from None
        return started

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req: ChatRequest = await parse(request, ChatRequest)
        adapter = resolve(req)
        if req.tools:
            raise APIError(400, "tools are not supported by this server", param="tools")
        if req.response_format and req.response_format.get("type", "text") not in ("text", "json_object"):
            raise APIError(400, "response_format: only 'text' and 'json_object' (accepted, not enforced) are "
                           "supported", param="response_format")
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": _message_text(m)}
                for m in req.messages]
        ids = eng.encode_chat(msgs)
        top = req.top_logprobs or 0
        if top and not req.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        params = sampling(req, req.logprobs, top, False, len(ids))
        jobs = start_jobs(adapter, [ids], params)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "created": now, "model": req.model, "system_fingerprint": _fingerprint(eng, adapter),
                "politune": record(adapter)}
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream_chat(request, jobs, base, len(ids), include_usage),
                                     media_type="text/event-stream", headers=headers(adapter))
        result = await _collect(request, jobs)
        choices = []
        for i in range(params.n):
            c = {"index": i, "message": {"role": "assistant", "content": result.text[0][i]},
                 "logprobs": {"content": [_chat_lp(t) for t in result.logprobs[0][i]]} if req.logprobs else None,
                 "finish_reason": result.finish[0][i]}
            choices.append(c)
        usage = _usage(len(ids), sum(result.tokens[0]))
        return JSONResponse({**base, "object": "chat.completion", "choices": choices, "usage": usage},
                            headers=headers(adapter))

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        req: CompletionRequest = await parse(request, CompletionRequest)
        adapter = resolve(req)
        if req.suffix:
            raise APIError(400, "suffix is not supported", param="suffix")
        if req.best_of not in (None, 1, req.n):
            raise APIError(400, "best_of is not supported", param="best_of")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or len(prompts) * req.n > limits.max_n * 4:
            raise APIError(400, f"prompt must hold 1 to {limits.max_n * 4 // req.n} strings", param="prompt")
        if req.logprobs is not None and req.logprobs > 5:
            raise APIError(400, "logprobs must be between 0 and 5", param="logprobs")
        if req.stream and req.echo:
            raise APIError(400, "echo is not supported with stream", param="echo")
        ids_list = [eng.encode_text(p) for p in prompts]
        if any(not ids for ids in ids_list):
            raise APIError(400, "prompt must not be empty", param="prompt")
        want_lp = req.logprobs is not None
        params = sampling(req, want_lp, req.logprobs or 0, req.echo and want_lp, max(len(i) for i in ids_list))
        jobs = start_jobs(adapter, ids_list, params)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "created": now, "model": req.model, "system_fingerprint": _fingerprint(eng, adapter),
                "politune": record(adapter)}
        n_prompt = sum(len(i) for i in ids_list)
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream_completion(request, jobs, base, n_prompt, include_usage),
                                     media_type="text/event-stream", headers=headers(adapter))
        result = await _collect(request, jobs)
        choices = []
        for p, prompt in enumerate(prompts):
            for i in range(params.n):
                text = result.text[p][i]
                lps = result.logprobs[p][i]
                if req.echo:
                    lps = (result.prompt_logprobs[p] or []) + lps
                    text = prompt + text
                choices.append({"index": p * params.n + i, "text": text, "finish_reason": result.finish[p][i],
                                "logprobs": _completion_lp(lps, 0) if want_lp else None})
        usage = _usage(n_prompt, sum(sum(t) for t in result.tokens))
        return JSONResponse({**base, "object": "text_completion", "choices": choices, "usage": usage},
                            headers=headers(adapter))

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def not_found(rest: str, request: Request):
        if rest in ("models", "chat/completions", "completions"):
            raise APIError(405, f"method {request.method} is not allowed on /v1/{rest}")
        raise APIError(404, f"unknown endpoint /v1/{rest[:100]}", "not_found_error", code="unknown_url")

    async def _stream_chat(request, jobs, base, n_prompt, include_usage):
        chunk = {**base, "object": "chat.completion.chunk"}
        n = jobs[0][0].params.n
        for i in range(n):
            yield _sse({**chunk, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                              "logprobs": None, "finish_reason": None}]})
        total = 0
        async for ev in _events(request, jobs):
            kind = ev[0]
            if kind == "delta":
                _, i, text, lps = ev[1]
                lp = {"content": [_chat_lp(t) for t in lps]} if lps else None
                yield _sse({**chunk, "choices": [{"index": i, "delta": {"content": text}, "logprobs": lp,
                                                  "finish_reason": None}]})
            elif kind == "done":
                _, i, reason, ntok = ev[1]
                total += ntok
                yield _sse({**chunk, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                                  "finish_reason": reason}]})
            elif kind == "error":
                yield _sse(error_body(ev[1], "server_error"))
                break
        if include_usage:
            yield _sse({**chunk, "choices": [], "usage": _usage(n_prompt, total)})
        yield "data: [DONE]\n\n"

    async def _stream_completion(request, jobs, base, n_prompt, include_usage):
        chunk = {**base, "object": "text_completion"}
        n = jobs[0][0].params.n
        total = 0
        async for ev in _events(request, jobs):
            p = ev[2]
            if ev[0] == "delta":
                _, i, text, lps = ev[1]
                yield _sse({**chunk, "choices": [{"index": p * n + i, "text": text, "finish_reason": None,
                                                  "logprobs": _completion_lp(lps, 0) if lps else None}]})
            elif ev[0] == "done":
                _, i, reason, ntok = ev[1]
                total += ntok
                yield _sse({**chunk, "choices": [{"index": p * n + i, "text": "", "finish_reason": reason,
                                                  "logprobs": None}]})
            elif ev[0] == "error":
                yield _sse(error_body(ev[1], "server_error"))
                break
        if include_usage:
            yield _sse({**chunk, "choices": [], "usage": _usage(n_prompt, total)})
        yield "data: [DONE]\n\n"

    return app



# ---- helpers ------------------------------------------------------------------------------------------------------
class _BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (by Content-Length, or while reading a chunked one).

    The rest of the body is read and dropped (up to ``drain_bytes``) before answering: closing a socket with
    unread data makes the kernel send a reset, and the client would never see the 413."""

    def __init__(self, app, max_bytes: int, drain_bytes: int = 64 << 20):
        self.app, self.max_bytes, self.drain_bytes = app, max_bytes, drain_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._drain(receive, 0)
                    return await self._reject(send)
        seen = 0
        responded = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    if msg.get("more_body"):
                        await self._drain(receive, seen)
                    raise _TooLarge()
            return msg

        async def tracking_send(msg):
            nonlocal responded
            if msg["type"] == "http.response.start":
                responded = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not responded:
                await self._reject(send)

    async def _drain(self, receive, seen: int) -> None:
        while seen <= self.drain_bytes:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body"):
                return

    async def _reject(self, send):
        body = json.dumps(error_body(f"request body is larger than {self.max_bytes} bytes",
                                     "invalid_request_error", code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


@dataclass
class _Result:
    text: list[list[str]]
    logprobs: list[list[list[TokenLogprob]]]
    finish: list[list[str | None]]
    tokens: list[list[int]]
    prompt_logprobs: list[list[TokenLogprob] | None]


async def _events(request, jobs):
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


async def _collect(request, jobs) -> _Result:
    n = jobs[0][0].params.n
    res = _Result([[""] * n for _ in jobs], [[[] for _ in range(n)] for _ in jobs], [[None] * n for _ in jobs],
                  [[0] * n for _ in jobs], [None for _ in jobs])
    async for kind, ev, k in _events(request, jobs):
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
        raise APIError(499 if await request.is_disconnected() else 500, "generation did not finish", "server_error")
    return res


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _fingerprint(eng: Engine, adapter: str | None) -> str:
    info = eng.adapters.get(adapter) if adapter else None
    return f"politune-{info.hash}" if info else "politune-base"


def _bytes(s: str) -> list[int]:
    return list(s.encode("utf-8"))


def _chat_lp(t: TokenLogprob) -> dict:
    return {"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.token),
            "top_logprobs": [{"token": s, "logprob": lp, "bytes": _bytes(s)} for s, lp in t.top]}


def _completion_lp(entries: list[TokenLogprob], offset0: int) -> dict:
    offsets, pos = [], offset0
    for t in entries:
        offsets.append(pos)
        pos += len(t.token)
    return {"tokens": [t.token for t in entries], "token_logprobs": [t.logprob for t in entries],
            "top_logprobs": [dict(t.top) if t.top else None for t in entries], "text_offset": offsets}


def load_compass_points(compass: str | Path | dict | CompassResult) -> dict[str, dict]:
    """``compass.json`` -> ``{target name or adapter name: {"economic", "social", "economic_ci", "social_ci",
    "track"}}`` using the first of the logprob, choice, open tracks that has both axes."""
    if isinstance(compass, CompassResult):
        result = compass
    elif isinstance(compass, dict):
        result = parse_result(compass, "compass", kind="compass")
    else:
        result = load_result(compass, kind="compass")
    points: dict[str, dict] = {}
    for m in result.models:
        for track in dict.fromkeys(("logprob", "choice", "open", *m.tracks)):
            t = m.tracks.get(track)
            e, s = (t.economic, t.social) if t is not None else (None, None)
            if e is not None and s is not None and e.score is not None and s.score is not None:
                points[m.target.name] = {"economic": e.score, "social": s.score, "economic_ci": e.ci.model_dump(),
                                         "social_ci": s.ci.model_dump(), "track": track, "target": m.target.name}
                break
    return points
