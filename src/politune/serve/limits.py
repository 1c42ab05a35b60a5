"""Where the server listens and what it allows: torch-free dataclasses, so the CLI takes its option defaults
from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """Where either backend (politune's server, ``vllm serve``) listens, and who may call it."""

    host: str = "127.0.0.1"  # any other address needs an api_key
    port: int = 8000  # 0: a free port (start_server's default)
    api_key: str | None = None  # when set, every /v1 request needs ``Authorization: Bearer KEY``


@dataclass
class ServeLimits:
    """Request limits. Defaults are documented in docs/serve.md."""

    max_body_bytes: int = 1_000_000  # request body size (413 above)
    max_tokens: int = 1024  # largest max_tokens a request may ask for (400 above)
    default_max_tokens: int = 256  # when a request gives none
    max_n: int = 8  # choices per request
    max_top_logprobs: int = 20  # OpenAI's own limit for chat
    max_queue: int = 256  # waiting requests (429 above)
    # sequences decoded together (docs/benchmarks.md: 32 vs 8 on smollm2, 2 CPU cores)
    max_batch_rows: int = 32
    scheduler: str = "continuous"  # or "static" (the previous engine; see politune.serve.sequence.Batching)
    max_prompt_tokens: int | None = None  # None: the model's context minus max_tokens
