"""The OpenAI-compatible HTTP app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` and the
comparison page at ``/``.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the matching status:
400 bad request (malformed JSON, invalid field, limit exceeded), 401 missing/wrong key, 404 unknown model or
path, 413 body too large, 429 queue full, 500 generation failure.

Where things are: the wire format in ``protocol.py``, the endpoints in ``routes.py``, streaming and collecting
the engine's events in ``streams.py``, the body-size limit in ``middleware.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from politune.measure.results import CompassResult, parse_result_as, read_json
from politune.serve.engine import Batching, Engine
from politune.serve.limits import ServeLimits
from politune.serve.middleware import BodyLimit
from politune.serve.protocol import APIError, error_body
from politune.serve.routes import Served, router


def create_app(
    model: str,
    adapters: dict[str, str] | None = None,
    api_key: str | None = None,
    limits: ServeLimits | None = None,
    *,
    compass: str | Path | dict[str, Any] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    served_name: str | None = None,
) -> FastAPI:
    """Build the FastAPI app: loads ``model`` once, attaches each ``adapters`` entry (name -> PEFT adapter
    directory) once, and starts the engine's worker thread (stopped at app shutdown).

    ``api_key``: when set, every ``/v1`` request needs ``Authorization: Bearer KEY``. ``compass``: a
    ``compass.json`` (path or parsed dict) whose points the comparison page shows.
    """
    limits = limits or ServeLimits()
    compass_points = load_compass_points(compass) if compass is not None else {}
    eng = Engine(
        model,
        adapters,
        device=device,
        dtype=dtype,
        batching=Batching(limits.scheduler, limits.max_batch_rows, limits.max_queue),
        served_name=served_name,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(eng.close)

    app = FastAPI(
        title="politune serve",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.engine = eng
    app.state.limits = limits
    app.state.served = Served(eng, limits, api_key, compass_points)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, APIError):  # registered for APIError only
        raise exc
    extra = {"Retry-After": "1"} if exc.status == 429 else None
    return JSONResponse(
        error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status, headers=extra
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for HTTPException only
        raise exc
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)


def load_compass_points(compass: str | Path | dict[str, Any] | CompassResult) -> dict[str, dict[str, Any]]:
    """``compass.json`` -> ``{target name or adapter name: {"economic", "social", "economic_ci", "social_ci",
    "track"}}`` using the first of the logprob, choice, open tracks that has both axes."""
    if isinstance(compass, CompassResult | dict):
        result = parse_result_as(compass, CompassResult, "compass")
    else:
        result = parse_result_as(read_json(compass), CompassResult, str(compass))
    points: dict[str, dict[str, Any]] = {}
    for m in result.models:
        for track in dict.fromkeys(("logprob", "choice", "open", *m.tracks)):
            t = m.tracks.get(track)
            e, s = (t.economic, t.social) if t is not None else (None, None)
            if e is not None and s is not None and e.score is not None and s.score is not None:
                points[m.target.name] = {
                    "economic": e.score,
                    "social": s.score,
                    "economic_ci": e.ci.model_dump(),
                    "social_ci": s.ci.model_dump(),
                    "track": track,
                    "target": m.target.name,
                }
                break
    return points
