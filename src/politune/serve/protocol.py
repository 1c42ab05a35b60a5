"""The OpenAI wire format as this server speaks it: request schemas, the error shape and the
response pieces (usage, log-probs, server-sent events).

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, raised as :class:`APIError`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from politune.serve.engine import Engine, TokenLogprob


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---- request schemas --------------------------------------------------------------------------------------------
class RequestBase(BaseModel):
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
    stream_options: dict[str, Any] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str] | None:
        if isinstance(v, str):
            v = [v]
        if v is not None and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(RequestBase):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(RequestBase):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


def message_text(m: ChatMessage) -> str:
    if m.content is None or isinstance(m.content, str):
        return m.content or ""
    parts = []
    for part in m.content:
        if part.get("type") != "text":
            raise APIError(
                400, f"content part type {part.get('type')!r} is not supported (text only)", param="messages"
            )
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def fingerprint(eng: Engine, adapter: str | None) -> str:
    info = eng.adapters.get(adapter) if adapter else None
    return f"politune-{info.hash}" if info else "politune-base"


def _bytes(s: str) -> list[int]:
    return list(s.encode("utf-8"))


def chat_logprob(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": _bytes(t.token),
        "top_logprobs": [{"token": s, "logprob": lp, "bytes": _bytes(s)} for s, lp in t.top],
    }


def completion_logprobs(entries: list[TokenLogprob], offset0: int) -> dict[str, Any]:
    offsets, pos = [], offset0
    for t in entries:
        offsets.append(pos)
        pos += len(t.token)
    return {
        "tokens": [t.token for t in entries],
        "token_logprobs": [t.logprob for t in entries],
        "top_logprobs": [dict(t.top) if t.top else None for t in entries],
        "text_offset": offsets,
    }
