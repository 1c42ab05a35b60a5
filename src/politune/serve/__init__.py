"""serve pillar: an OpenAI-compatible server for one base model and one LoRA adapter per stance, a side-by-side
comparison page, and the equivalent ``vllm serve`` command for GPUs.

- :func:`create_app` -> FastAPI app; :func:`start_server` -> context manager yielding ``http://127.0.0.1:PORT/v1``;
- :class:`Endpoint` (host, port, API key); :class:`ServeLimits` (body size, max_tokens, n, queue
  length, batch size, scheduler);
- :func:`vllm_command` -> the ``vllm serve`` argv for the same model and adapters.

Names are imported on first use (PEP 562), so ``politune.serve.limits`` can be read without loading torch
(the CLI takes its option defaults from :class:`ServeLimits`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from politune.serve.adapters import read_model_card
    from politune.serve.app import create_app, load_compass_points
    from politune.serve.engine import Batching, Engine, SamplingParams
    from politune.serve.limits import Endpoint, ServeLimits
    from politune.serve.server import run_app, serve, start_server
    from politune.serve.vllm import VllmCommand, vllm_command

_WHERE = {
    "Batching": "engine",
    "Engine": "engine",
    "SamplingParams": "engine",
    "Endpoint": "limits",
    "ServeLimits": "limits",
    "create_app": "app",
    "load_compass_points": "app",
    "read_model_card": "adapters",
    "run_app": "server",
    "serve": "server",
    "start_server": "server",
    "VllmCommand": "vllm",
    "vllm_command": "vllm",
}
__all__ = [
    "Batching",
    "Engine",
    "SamplingParams",
    "Endpoint",
    "ServeLimits",
    "create_app",
    "load_compass_points",
    "read_model_card",
    "run_app",
    "serve",
    "start_server",
    "VllmCommand",
    "vllm_command",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'politune.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"politune.serve.{_WHERE[name]}"), name)
