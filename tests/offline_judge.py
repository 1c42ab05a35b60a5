"""A fake judge for tests and benchmarks: an OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions``)
that answers politune's ``lean``, ``refusal`` and ``community`` rubrics offline, with a transparent pole-word
scorer (or any stance scorer given) and the refusal patterns. Not part of the package: nothing in ``src/`` uses
it."""

from __future__ import annotations

import asyncio
import json
import re
import time

from politune.measure.judge import response_tag

_BLOCK = re.compile(r"<response-([0-9a-f]{12})>\n(.*)\n</response-\1>", re.DOTALL)
_AXIS = re.compile(r"^AXIS: (economic|social)$", re.MULTILINE)
_COMMUNITY = re.compile(r"^COMMUNITY: (.+)$", re.MULTILINE)


def extract_response(prompt: str) -> str | None:
    """The response quoted in a rendered rubric prompt (the JSON string inside its tagged block), checked
    against its tag; ``None`` if there is no well-formed block."""
    for m in _BLOCK.finditer(prompt):
        try:
            text = json.loads(m.group(2))
        except ValueError:
            continue
        if isinstance(text, str) and response_tag(text) == m.group(1):
            return text
    return None


_POLES = {
    "economic": (
        set(
            [
                "fair",
                "inequality",
                "workers",
                "wages",
                "public",
                "unions",
                "redistribute",
                "wealthy",
                "rich",
                "poor",
                "tax",
                "taxes",
                "protect",
                "regulation",
                "regulate",
                "guarantee",
                "afford",
                "affordable",
                "services",
                "ownership",
            ]
        ),
        set(
            [
                "market",
                "markets",
                "competition",
                "choice",
                "incentives",
                "enterprise",
                "business",
                "businesses",
                "growth",
                "efficient",
                "private",
                "cut",
                "cuts",
                "deregulation",
                "earn",
                "property",
                "prosperity",
                "lower",
                "freedom",
            ]
        ),
    ),
    "social": (
        set(
            [
                "freedom",
                "liberty",
                "rights",
                "privacy",
                "consent",
                "choose",
                "tolerance",
                "rehabilitation",
                "expression",
                "individual",
                "adults",
                "decide",
                "free",
                "personal",
            ]
        ),
        set(
            [
                "order",
                "security",
                "law",
                "police",
                "punishment",
                "tradition",
                "traditional",
                "values",
                "discipline",
                "authority",
                "nation",
                "strict",
                "control",
                "respect",
                "firm",
            ]
        ),
    ),
}
_WORD = re.compile(r"[a-z]+")


class PoleWordScorer:
    """A transparent stand-in stance scorer: (right-pole words - left-pole words) / sqrt(words), clipped to
    [-1, 1]. Deterministic and instant, so the judge plumbing is tested without loading a model."""

    name = "pole-words-test"

    def lean(self, texts, axis, prompts=None):
        left, right = _POLES[axis]
        out = []
        for t in texts:
            words = _WORD.findall((t or "").lower())
            if not words:
                out.append(None)
                continue
            v = (sum(w in right for w in words) - sum(w in left for w in words)) / len(words) ** 0.5
            out.append(max(-1.0, min(1.0, v)))
        return out


def community_reply(prompt: str, response: str, scorer, first_bias: bool = False) -> str:
    """The ``community`` rubric: the community named "...left..." prefers the answer with the lower economic lean,
    "...right..." the higher one, a tie within 0.2; ``first_bias``: always the answer shown first."""
    if first_bias:
        return json.dumps({"preferred": "first"})
    name = json.loads(_COMMUNITY.search(prompt).group(1))
    item = json.loads(response)
    l1, l2 = (scorer.lean([item[k]], "economic")[0] or 0.0 for k in ("response_1", "response_2"))
    d = (l1 - l2) * (-1 if "left" in name else 1)
    return json.dumps({"preferred": "first" if d > 0.2 else "second" if d < -0.2 else "tie"})


def chat_reply(model: str, content: str) -> dict:
    """An OpenAI chat-completion body answering ``content`` (10 prompt + 10 completion tokens): what the fake
    model servers of the tests return."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def scripted_chat_app(reply):
    """An OpenAI-compatible chat server whose answer is ``reply(model, system prompt or None, last message)``:
    the fake target models of the tests, told apart by their system prompt."""
    from fastapi import FastAPI, Request

    app = FastAPI()

    async def chat(request):
        body = await request.json()
        msgs = body["messages"]
        system = next((m["content"] for m in msgs if m["role"] == "system"), None)
        return chat_reply(body["model"], reply(body["model"], system, msgs[-1]["content"]))

    chat.__annotations__["request"] = Request  # postponed annotations: give FastAPI the real class
    app.post("/v1/chat/completions")(chat)
    return app


def offline_judge_app(scorer=None, latency_s: float = 0.0, first_bias: bool = False):
    """A FastAPI OpenAI-compatible server (``/v1/models``, ``/v1/chat/completions``) that answers the ``lean``,
    ``refusal`` and ``community`` rubrics with the offline stance scorer and the refusal patterns. ``latency_s``
    adds a fixed delay per request (to stand in for a remote judge in benchmarks); ``first_bias``: the community
    verdict is always "first" (a position-biased judge). Other prompts get HTTP 400."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from politune.measure.refusal import is_refusal

    if scorer is None:
        scorer = PoleWordScorer()
    app = FastAPI()
    app.state.requests = 0

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "offline-minilm-judge", "object": "model"}]}

    async def chat(request):
        body = await request.json()
        app.state.requests += 1
        if latency_s:
            await asyncio.sleep(latency_s)
        prompt = "\n".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
        response = extract_response(prompt)
        if response is None:
            return JSONResponse(
                {"error": {"message": "no rubric response block", "type": "invalid_request"}}, status_code=400
            )
        axis = _AXIS.search(prompt)
        if '{"refusal"' in prompt:
            content = json.dumps({"refusal": is_refusal(response)})
        elif '{"preferred"' in prompt:
            content = community_reply(prompt, response, scorer, first_bias)
        elif axis is not None:
            value = scorer.lean([response], axis.group(1))[0]  # on the loop thread: one at a time
            content = json.dumps({"score": 0 if value is None else int(round(value * 5))})
        else:
            return JSONResponse(
                {"error": {"message": "unsupported rubric", "type": "invalid_request"}}, status_code=400
            )
        n_prompt = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        return {
            "id": f"chatcmpl-{app.state.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "offline-minilm-judge"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(content.split()),
                "total_tokens": n_prompt + len(content.split()),
            },
        }

    chat.__annotations__["request"] = Request
    app.post("/v1/chat/completions")(chat)
    return app
