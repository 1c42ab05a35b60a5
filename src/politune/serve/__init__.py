"""serve pillar: an OpenAI-compatible server for one base model and one LoRA adapter per stance, a side-by-side
comparison page, and the equivalent ``vllm serve`` command for GPUs.

- :func:`create_app` -> FastAPI app; :func:`start_server` -> context manager yielding ``http://127.0.0.1:PORT/v1``;
- :class:`ServeLimits` (body size, max_tokens, n, queue length, batch size, scheduler);
- :func:`vllm_command` -> the ``vllm serve`` argv for the same model and adapters.
"""

from politune.serve.adapters import read_model_card
from politune.serve.app import create_app, load_compass_points
from politune.serve.engine import Batching, Engine, SamplingParams
from politune.serve.protocol import ServeLimits
from politune.serve.server import run_app, serve, start_server
from politune.serve.vllm import VllmCommand, vllm_command

__all__ = [
    "Batching",
    "Engine",
    "SamplingParams",
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
