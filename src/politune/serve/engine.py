"""The inference engine behind ``politune serve``: one base model, LoRA adapters chosen per row.

- The base model is loaded once; every adapter is attached to it once with PEFT under its own name. A request's
  ``model`` picks the adapter or the bare base: no model copies.
- One worker thread owns the model: requests wait in a bounded FIFO queue (``QueueFull`` -> 429 above
  ``max_queue``) and are decoded by one of two schedulers (:class:`~politune.serve.sequence.Batching`):
  ``continuous`` (default, ``batching.py``): iteration-level batching, requests join and leave the running batch
  at every decoding step and rows of different adapters share each forward pass; ``static`` (``static.py``, the
  engine before it): one batch of same-adapter requests decoded to completion, then the next.
- A manual decode loop (not ``model.generate``) so that each sequence has its own sampling settings and seed,
  streams its text as it is produced, stops on its own stop strings, and reports log-probabilities
  (``sequence.py``).

Log-probabilities are those of the model's own next-token distribution (before temperature and top-p), as
vLLM reports them by default.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from politune.errors import PolituneError
from politune.fsutil import safe_name, sha256_dir
from politune.serve.adapters import adapter_rank, read_model_card
from politune.serve.batching import BASE_ROW, ContinuousBatcher
from politune.serve.sequence import Batching, Event, Job, SamplingParams, Sequence, TokenLogprob

__all__ = [
    "BASE",
    "AdapterInfo",
    "Batching",
    "Engine",
    "Event",
    "EventSink",
    "Job",
    "QueueFull",
    "SamplingParams",
    "Sequence",
    "TokenLogprob",
]

log = logging.getLogger("politune")

BASE = "base"  # reserved alias of the bare base model


class QueueFull(Exception):
    """The request queue is at its limit (the server answers 429)."""


@dataclass
class AdapterInfo:
    name: str
    path: Path
    hash: str  # first 16 hex of the SHA-256 of its safetensors files (as measure targets record it)
    rank: int
    card: dict[str, Any]  # model card summary (see read_model_card)


class Engine:
    """Owns the model. ``submit`` queues a :class:`Job`; the worker thread decodes and calls ``job.emit`` with
    ``("delta", index, text, logprobs|None)``, ``("prompt_logprobs", entries)``, ``("done", index,
    finish_reason, n_tokens)`` for each sequence, then ``("end", None)`` (or ``("error", message)``)."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str] | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batching: Batching | None = None,
        served_name: str | None = None,
        start: bool = True,
    ) -> None:
        self.model_ref = model
        self.served_name = served_name or (
            Path(model).name if ("/" in model and Path(model).exists()) else model
        )
        self.batching = batching or Batching()
        self.max_batch_rows, self.max_queue = self.batching.max_batch_rows, self.batching.max_queue
        self.adapters: dict[str, AdapterInfo] = {}
        for name, adir in (adapters or {}).items():
            safe_name(name, "adapter name")
            if name in (BASE, self.served_name):
                raise PolituneError(f"adapter name {name!r} is reserved for the base model")
            path = Path(adir)
            if not path.is_dir():
                raise PolituneError(f"adapter {name}={adir}: directory not found")
            self.adapters[name] = AdapterInfo(
                name, path, sha256_dir(path, "*.safetensors")[:16], adapter_rank(path), read_model_card(path)
            )
        self._load(model, device, dtype)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self._pending: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._token_text: dict[int, str] = {}
        # batches: prefill groups (static: whole batches); steps: decoding forward passes; mixed_steps: those with
        # rows of more than one model; joins: groups merged into a running batch; prefix_rows / prefix_tokens:
        # rows prefilled on a stored prompt prefix and the prompt tokens that saved (continuous only)
        self.stats = dict.fromkeys(
            (
                "batches",
                "sequences",
                "max_batch_rows",
                "generated_tokens",
                "steps",
                "mixed_steps",
                "joins",
                "prefix_rows",
                "prefix_tokens",
            ),
            0,
        )
        self.batcher = ContinuousBatcher(self)
        self._worker = threading.Thread(target=self._run, name="politune-serve-engine", daemon=True)
        if start:
            self._worker.start()

    def _load(self, model: str, device: str, dtype: str) -> None:
        """The base model with every adapter attached once; its cache argument, stop and pad tokens."""
        from politune.models.loading import load_adapter, load_model

        self.model, self.tokenizer = load_model(model, device=device, dtype=dtype)
        for i, info in enumerate(self.adapters.values()):
            try:
                if i == 0:
                    self.model = load_adapter(self.model, info.path, name=info.name)
                else:
                    self.model.load_adapter(str(info.path), adapter_name=info.name, is_trainable=False)
            except PolituneError:
                raise
            except Exception as e:  # wrong base model (shape mismatch), unreadable weights
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise PolituneError(
                    f"adapter {info.name}={info.path}: cannot be attached to {model!r} ({first})"
                ) from None
        self.model.eval()
        self.device = next(self.model.parameters()).device
        base_model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        params = inspect.signature(base_model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        gen_eos = self.model.generation_config.eos_token_id
        eos = set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(eos)
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos or {0})
        )

    # ---- public -------------------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [self.served_name, *self.adapters]

    def resolve(self, name: str) -> str | None | bool:
        """Request ``model`` -> adapter name, ``None`` for the base, ``False`` if unknown. Never a path."""
        if name in (self.served_name, BASE):
            return None
        if name in self.adapters:
            return name
        return False

    @property
    def queue_length(self) -> int:
        return len(self._pending)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"request queue is full ({self.max_queue} waiting)")
            self._pending.append(job)
            self._cv.notify()

    def admit(self, busy_rows: int) -> list[Job]:
        """Pop the waiting requests, oldest first, that fit next to ``busy_rows`` running sequences (the oldest
        one always fits an empty batch); stops at the first that does not fit. Skips cancelled ones."""
        jobs: list[Job] = []
        rows = busy_rows
        with self._cv:
            while self._pending and not self._closed:
                job = self._pending[0]
                if job.cancelled:
                    self._pending.popleft()
                    continue
                if rows and rows + job.params.n > self.max_batch_rows:
                    break
                jobs.append(self._pending.popleft())
                rows += job.params.n
        return jobs

    def wait_for_work(self, idle: bool) -> bool:
        """Worker: when ``idle``, sleep until a request waits. False once the engine is closed."""
        with self._cv:
            while idle and not self._pending and not self._closed:
                self._cv.wait()
            return not self._closed

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            for job in self._pending:
                job.emit(("error", "the server is shutting down"))
            self._pending.clear()
            self._cv.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        from politune.models.generation import format_chat

        return self.encode_text(format_chat(self.tokenizer, messages))

    def encode_text(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]  # Tokenizer is untyped
        return ids

    def token_text(self, tok: int) -> str:
        s = self._token_text.get(tok)
        if s is None:
            s = self._token_text[tok] = self.tokenizer.decode([tok])
        return s

    def token_logprob(self, tok: int, lsm: torch.Tensor, top: int) -> TokenLogprob:
        tops = []
        if top > 0:
            vals, idx = torch.topk(lsm, min(top, lsm.shape[-1]))
            tops = [(self.token_text(int(i)), float(v)) for v, i in zip(vals, idx, strict=True)]
        lp = float(lsm[tok])
        return TokenLogprob(tok, self.token_text(tok), lp if math.isfinite(lp) else -9999.0, tops)

    # ---- used by the schedulers ---------------------------------------------------------------------------
    def _run(self) -> None:
        if self.batching.scheduler == "static":
            from politune.serve import static

            static.run(self)
        else:
            self.batcher.run()

    def count_rows(self, n: int, batches: int) -> None:
        self.stats["batches"] += batches
        self.stats["sequences"] += n
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], n)

    def adapter_context(self, adapter: str | None) -> contextlib.AbstractContextManager[Any]:
        """Make ``adapter`` (``None``: the bare base) the one every row uses."""
        if not self.adapters:
            return contextlib.nullcontext()
        if adapter is None:
            bare: contextlib.AbstractContextManager[Any] = self.model.disable_adapter()  # PEFT, untyped here
            return bare
        if self.model.active_adapter != adapter:  # set_adapter walks every module: only when it changes
            self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        cache: Any,
        names: list[str],
        logits_to_keep: int = 1,
    ) -> Any:
        """One forward pass over rows whose models are ``names`` (an adapter name, or ``"__base__"``)."""
        kw: dict[str, Any] = {} if cache is None else {self.cache_arg: cache}
        ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.adapters and len(set(names)) > 1:
            kw["adapter_names"] = names  # PEFT applies each row's own LoRA (none for "__base__")
        else:
            ctx = self.adapter_context(None if names[0] == BASE_ROW else names[0])
        with ctx:
            return self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                logits_to_keep=logits_to_keep,
                **kw,
            )

    def left_padded(self, prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, attention mask) of the prompts, left-padded to ``width``, on the model's device."""
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def cache_of(out: Any) -> Any:
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values


class EventSink:
    """Bridges the worker thread to an asyncio consumer: ``emit`` is thread-safe, ``get`` is awaited."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def emit(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the client is gone
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def get(self) -> Event:
        return await self.queue.get()
