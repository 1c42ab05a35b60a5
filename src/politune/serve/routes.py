"""The HTTP endpoints: ``/``, ``/health``, ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` and a
404/405 for any other ``/v1`` path. Each handler reads the app's :class:`Served` (engine, limits, key, compass
points) from ``request.app.state.served``. Nothing in a request becomes a path: the ``model`` field is looked up
in the server's own registry of names.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NoReturn, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from politune.serve.engine import BASE, Engine, EventSink, Job, QueueFull, SamplingParams
from politune.serve.limits import ServeLimits
from politune.serve.protocol import (
    APIError,
    ChatRequest,
    CompletionRequest,
    RequestBase,
    chat_logprob,
    completion_logprobs,
    fingerprint,
    message_text,
    usage,
)
from politune.serve.streams import Jobs, Stream, collect, stream_chat, stream_completion

router = APIRouter()

RequestModel = TypeVar("RequestModel", bound=BaseModel)


@dataclass
class Served:
    """What the endpoints serve: the engine, the request limits, the API key and the compass points."""

    engine: Engine
    limits: ServeLimits
    api_key: str | None = None
    compass_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def adapter_hash(self, adapter: str | None) -> str | None:
        info = self.engine.adapters.get(adapter) if adapter else None
        return info.hash if info else None

    def resolve(self, name: str) -> str | None:
        """The adapter a model name means (``None``: the base model); 404 for an unknown name."""
        adapter = self.engine.resolve(name)
        if adapter is False or adapter is True:
            raise APIError(
                404,
                f"The model {name[:100]!r} does not exist; served: {', '.join(self.engine.model_names())}",
                "not_found_error",
                param="model",
                code="model_not_found",
            )
        return adapter

    def model_entry(self, name: str, adapter: str | None) -> dict[str, Any]:
        eng = self.engine
        info = eng.adapters.get(adapter) if adapter else None
        extra = {
            "kind": "adapter" if info else "base",
            "base_model": eng.served_name,
            "adapter_hash": info.hash if info else None,
            "lora_rank": info.rank if info else None,
            "card": info.card if info else None,
            "compass": self.compass_points.get(adapter if info and adapter else BASE),
        }
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "politune",
            "root": eng.served_name if info is None else str(info.name),
            "parent": eng.served_name if info else None,
            "politune": extra,
        }


def _served(request: Request) -> Served:
    """The request's :class:`Served`, once its API key is checked (401 when wrong or missing)."""
    served: Served = request.app.state.served
    if served.api_key is None:
        return served
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(
            401,
            "missing API key: send 'Authorization: Bearer KEY'",
            "authentication_error",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), served.api_key.encode()):
        raise APIError(401, "incorrect API key", "authentication_error", code="invalid_api_key")
    return served


async def _parse(request: Request, schema: type[RequestModel]) -> RequestModel:
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


@dataclass
class _LogprobRequest:
    logprobs: bool
    top_logprobs: int
    echo: bool


def _sampling(req: RequestBase, served: Served, lp: _LogprobRequest, n_prompt: int) -> SamplingParams:
    """The request's sampling parameters, checked against the server's limits (400 on any excess)."""
    limits = served.limits
    if req.presence_penalty or req.frequency_penalty or req.logit_bias:
        raise APIError(
            400,
            "presence_penalty, frequency_penalty and logit_bias are not supported",
            param="presence_penalty",
        )
    mt = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if mt is None:
        mt = limits.default_max_tokens
    if mt > limits.max_tokens:
        raise APIError(
            400, f"max_tokens is {mt}; this server allows at most {limits.max_tokens}", param="max_tokens"
        )
    if req.n > limits.max_n:
        raise APIError(400, f"n is {req.n}; this server allows at most {limits.max_n}", param="n")
    if lp.top_logprobs > limits.max_top_logprobs:
        raise APIError(
            400, f"top_logprobs is {lp.top_logprobs}; at most {limits.max_top_logprobs}", param="top_logprobs"
        )
    cap = limits.max_prompt_tokens or (served.engine.max_context - mt)
    if n_prompt > cap:
        raise APIError(
            400,
            f"the prompt has {n_prompt} tokens; with max_tokens={mt} at most {cap} fit",
            param="messages",
            code="context_length_exceeded",
        )
    if mt == 0 and not lp.echo:
        raise APIError(400, "max_tokens must be at least 1 (0 only with echo)", param="max_tokens")
    return SamplingParams(
        max_tokens=mt,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=[req.stop] if isinstance(req.stop, str) else (req.stop or []),
        seed=req.seed,
        n=req.n,
        logprobs=lp.logprobs,
        top_logprobs=lp.top_logprobs,
        echo_logprobs=lp.echo,
    )


def _start_jobs(
    served: Served, adapter: str | None, prompts: list[list[int]], params: SamplingParams
) -> Jobs:
    loop = asyncio.get_running_loop()
    started: Jobs = []
    try:
        for ids in prompts:
            sink = EventSink(loop)
            job = Job(adapter, ids, params, sink.emit)
            served.engine.submit(job)
            started.append((job, sink))
    except QueueFull as e:
        for job, _ in started:
            job.cancelled = True
        raise APIError(429, str(e), "rate_limit_error", code="queue_full") from None
    return started


def _envelope(served: Served, prefix: str, req: RequestBase, adapter: str | None) -> dict[str, Any]:
    """The fields every answer (and every streamed chunk) carries."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": fingerprint(served.engine, adapter),
        "politune": {
            "base_model": served.engine.served_name,
            "adapter": adapter,
            "adapter_hash": served.adapter_hash(adapter),
        },
    }


def _headers(served: Served, adapter: str | None) -> dict[str, str]:
    return {
        "X-Politune-Adapter": adapter or "",
        "X-Politune-Adapter-Hash": served.adapter_hash(adapter) or "",
    }


def _stream(served: Served, adapter: str | None, chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream", headers=_headers(served, adapter))


def _include_usage(req: RequestBase) -> bool:
    return bool((req.stream_options or {}).get("include_usage"))


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    page = resources.files("politune.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'",
        },
    )


# response_model=None on the endpoints that return a dict: their return annotation is for the type checker;
# FastAPI sends the dict as it is, with no response model built from the annotation.
@router.get("/health", include_in_schema=False, response_model=None)
async def health(request: Request) -> dict[str, Any]:
    eng = request.app.state.served.engine
    return {"status": "ok", "queue": eng.queue_length, "stats": dict(eng.stats)}


@router.get("/v1/models", response_model=None)
async def list_models(request: Request) -> dict[str, Any]:
    served = _served(request)
    names = [(served.engine.served_name, None)] + [(n, n) for n in served.engine.adapters]
    return {"object": "list", "data": [served.model_entry(name, adapter) for name, adapter in names]}


@router.get("/v1/models/{name}", response_model=None)
async def get_model(name: str, request: Request) -> dict[str, Any]:
    served = _served(request)
    adapter = served.resolve(name)
    return served.model_entry(name if adapter else served.engine.served_name, adapter)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    served = _served(request)
    req: ChatRequest = await _parse(request, ChatRequest)
    adapter = served.resolve(req.model)
    if req.tools:
        raise APIError(400, "tools are not supported by this server", param="tools")
    if req.response_format and req.response_format.get("type", "text") not in ("text", "json_object"):
        raise APIError(
            400,
            "response_format: only 'text' and 'json_object' (accepted, not enforced) are supported",
            param="response_format",
        )
    msgs = [
        {"role": "system" if m.role == "developer" else m.role, "content": message_text(m)}
        for m in req.messages
    ]
    ids = served.engine.encode_chat(msgs)
    top = req.top_logprobs or 0
    if top and not req.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    params = _sampling(req, served, _LogprobRequest(req.logprobs, top, False), len(ids))
    jobs = _start_jobs(served, adapter, [ids], params)
    base = _envelope(served, "chatcmpl", req, adapter)
    if req.stream:
        return _stream(
            served, adapter, stream_chat(request, jobs, Stream(base, len(ids), _include_usage(req)))
        )
    result = await collect(request, jobs)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": result.text[0][i]},
            "logprobs": {"content": [chat_logprob(t) for t in result.logprobs[0][i]]}
            if req.logprobs
            else None,
            "finish_reason": result.finish[0][i],
        }
        for i in range(params.n)
    ]
    return JSONResponse(
        {
            **base,
            "object": "chat.completion",
            "choices": choices,
            "usage": usage(len(ids), sum(result.tokens[0])),
        },
        headers=_headers(served, adapter),
    )


def _check_completion(req: CompletionRequest, limits: ServeLimits) -> list[str]:
    """The request's prompts, once the fields this server does not support are rejected."""
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
    return prompts


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    served = _served(request)
    req: CompletionRequest = await _parse(request, CompletionRequest)
    adapter = served.resolve(req.model)
    prompts = _check_completion(req, served.limits)
    ids_list = [served.engine.encode_text(p) for p in prompts]
    if any(not ids for ids in ids_list):
        raise APIError(400, "prompt must not be empty", param="prompt")
    want_lp = req.logprobs is not None
    lp = _LogprobRequest(want_lp, req.logprobs or 0, req.echo and want_lp)
    params = _sampling(req, served, lp, max(len(i) for i in ids_list))
    jobs = _start_jobs(served, adapter, ids_list, params)
    base = _envelope(served, "cmpl", req, adapter)
    n_prompt = sum(len(i) for i in ids_list)
    if req.stream:
        return _stream(
            served, adapter, stream_completion(request, jobs, Stream(base, n_prompt, _include_usage(req)))
        )
    result = await collect(request, jobs)
    choices = []
    for p, prompt in enumerate(prompts):
        for i in range(params.n):
            text, lps = result.text[p][i], result.logprobs[p][i]
            if req.echo:
                lps = (result.prompt_logprobs[p] or []) + lps
                text = prompt + text
            choices.append(
                {
                    "index": p * params.n + i,
                    "text": text,
                    "finish_reason": result.finish[p][i],
                    "logprobs": completion_logprobs(lps, 0) if want_lp else None,
                }
            )
    return JSONResponse(
        {
            **base,
            "object": "text_completion",
            "choices": choices,
            "usage": usage(n_prompt, sum(sum(t) for t in result.tokens)),
        },
        headers=_headers(served, adapter),
    )


@router.api_route(
    "/v1/{rest:path}",
    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
    include_in_schema=False,
    response_model=None,
)
async def not_found(rest: str, request: Request) -> NoReturn:
    if rest in ("models", "chat/completions", "completions"):
        raise APIError(405, f"method {request.method} is not allowed on /v1/{rest}")
    raise APIError(404, f"unknown endpoint /v1/{rest[:100]}", "not_found_error", code="unknown_url")
