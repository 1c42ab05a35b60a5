"""The inference engine behind ``politune serve``: one base model, LoRA adapters switched per batch.

- The base model is loaded once; every adapter is attached to it once with PEFT under its own name. A request's
  ``model`` picks the adapter (``set_adapter``) or the bare base (``disable_adapter``): no model copies.
- One worker thread owns the model (the lock): requests wait in a bounded FIFO queue; the worker takes the
  oldest request and every other waiting request for the same adapter (up to ``max_batch_rows`` sequences) and
  decodes them together, left-padded, with a KV cache.
- A manual decode loop (not ``model.generate``) so that each sequence has its own sampling settings and seed,
  streams its text as it is produced, stops on its own stop strings, and reports log-probabilities.

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
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from politune.errors import PolituneError
from politune.fsutil import safe_name, sha256_dir
from politune.serve.adapters import adapter_rank, read_model_card

log = logging.getLogger("politune")

BASE = "base"  # reserved alias of the bare base model


class QueueFull(Exception):
    """The request queue is at its limit (the server answers 429)."""


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    echo_logprobs: bool = False  # also score the prompt tokens (completions with echo + logprobs)


@dataclass
class TokenLogprob:
    token_id: int
    token: str
    logprob: float | None  # None for the first prompt token (nothing conditions it)
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class AdapterInfo:
    name: str
    path: Path
    hash: str  # first 16 hex of the SHA-256 of its safetensors files (as measure targets record it)
    rank: int
    card: dict  # model card summary (see read_model_card)


@dataclass
class Job:
    """One prompt of one request; its ``n`` sequences are decoded together. Events go to ``emit``."""

    adapter: str | None
    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[tuple], None]
    cancelled: bool = False
    created: float = field(default_factory=time.monotonic)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return probs
    sorted_p, idx = torch.sort(probs, descending=True)
    keep = (torch.cumsum(sorted_p, -1) - sorted_p) < top_p
    keep[0] = True
    out = torch.zeros_like(probs)
    out[idx[keep]] = sorted_p[keep]
    return out / out.sum()


class _Sequence:
    """One sequence being decoded: its tokens, text emitted so far, stop handling."""

    def __init__(self, engine: Engine, job: Job, index: int):
        self.engine, self.job, self.index = engine, job, index
        self.ids: list[int] = []
        self.n_sampled = 0
        self.emitted = ""
        self.finished = job.params.max_tokens == 0
        p = job.params
        self.gen = None
        if p.temperature > 0:
            self.gen = torch.Generator()
            seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little")
            self.gen.manual_seed(seed + index)
        self.holdback = max((len(s) for s in p.stop), default=1) - 1

    def step(self, logits: torch.Tensor) -> int:
        """Pick the next token from ``logits`` (1-D, float32), emit text; returns the token id."""
        p = self.job.params
        if p.temperature <= 0:
            tok = int(torch.argmax(logits))
        else:
            probs = _top_p_filter(torch.softmax(logits / p.temperature, -1), p.top_p)
            tok = int(torch.multinomial(probs, 1, generator=self.gen))
        lps = None
        if p.logprobs:
            lsm = torch.log_softmax(logits, -1)
            lps = [self.engine.token_logprob(tok, lsm, p.top_logprobs)]
        reason = None
        self.n_sampled += 1
        if tok in self.engine.eos_ids:
            reason = "stop"
        else:
            self.ids.append(tok)
        text = self.engine.tokenizer.decode(self.ids, skip_special_tokens=True)
        if reason is None and p.stop:
            hits = [text.find(s) for s in p.stop if s and s in text]
            if hits:
                text, reason = text[: min(hits)], "stop"
        if reason is None and self.n_sampled >= p.max_tokens:
            reason = "length"
        end = len(text)
        if reason is None:
            end = min(len(text), max(len(self.emitted), len(text) - self.holdback))
            while end > len(self.emitted) and text[end - 1] == "\ufffd":
                end -= 1  # an incomplete UTF-8 character: wait for its next byte
        delta = text[len(self.emitted) : end] if text.startswith(self.emitted) else ""
        self.emitted += delta
        if delta or lps:
            self.job.emit(("delta", self.index, delta, lps))
        if reason is not None:
            self.finished = True
            self.job.emit(("done", self.index, reason, self.n_sampled))
        return tok


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
        max_batch_rows: int = 8,
        max_queue: int = 256,
        served_name: str | None = None,
        start: bool = True,
    ):
        self.model_ref = model
        self.served_name = served_name or (
            Path(model).name if ("/" in model and Path(model).exists()) else model
        )
        self.max_batch_rows, self.max_queue = max_batch_rows, max_queue
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
        self.stats = {"batches": 0, "sequences": 0, "max_batch_rows": 0, "generated_tokens": 0}
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
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
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

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closed = True
            for job in self._pending:
                job.emit(("error", "the server is shutting down"))
            self._pending.clear()
            self._cv.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout)

    def encode_chat(self, messages: list[dict]) -> list[int]:
        from politune.models.generation import format_chat

        text = format_chat(self.tokenizer, messages)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

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

    # ---- worker -------------------------------------------------------------------------------------------
    def _take_batch(self) -> list[Job] | None:
        with self._cv:
            while not self._pending and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            first = self._pending.popleft()
            batch, rows = [first], first.params.n
            for job in list(self._pending):
                if job.adapter == first.adapter and rows + job.params.n <= self.max_batch_rows:
                    self._pending.remove(job)
                    batch.append(job)
                    rows += job.params.n
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            batch = [j for j in batch if not j.cancelled]
            if not batch:
                continue
            try:
                self._decode(batch)
            except Exception as e:  # never kill the worker: report to the requests, keep serving
                log.exception("generation failed")
                for job in batch:
                    job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
                continue
            for job in batch:
                job.emit(("end", None))

    def _adapter_context(self, adapter: str | None):
        if not self.adapters:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _decode(self, batch: list[Job]) -> None:
        seqs = [_Sequence(self, job, i) for job in batch for i in range(job.params.n)]
        self.stats["batches"] += 1
        self.stats["sequences"] += len(seqs)
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(seqs))
        prompts = [job.prompt_ids for job in batch for _ in range(job.params.n)]
        width = max(len(p) for p in prompts)
        ids, mask = self._left_padded(prompts, width)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._adapter_context(batch[0].adapter):
            echo = any(job.params.echo_logprobs for job in batch)
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                logits_to_keep=0 if echo else 1,
            )
            logits = out.logits.float()
            if echo:
                self._emit_prompt_logprobs(batch, prompts, logits, width)
            logits = logits[:, -1, :].cpu()  # sampling and seeds on the CPU (small: rows x vocab)
            for seq in seqs:
                if seq.finished:  # max_tokens == 0 (echo only)
                    seq.job.emit(("done", seq.index, "length", 0))
            past = _cache_of(out)
            max_steps = max(job.params.max_tokens for job in batch)
            active = list(range(len(seqs)))  # the sequence behind each row of the batch tensors
            for _ in range(max_steps):
                nxt = []
                for r, i in enumerate(active):
                    seq = seqs[i]
                    if seq.job.cancelled:
                        seq.finished = True
                    nxt.append(self.pad_id if seq.finished else seq.step(logits[r]))
                keep = [r for r, i in enumerate(active) if not seqs[i].finished]
                if not keep:
                    break
                step_ids = torch.tensor(nxt, dtype=torch.long, device=self.device)[:, None]
                if len(keep) < len(active) and hasattr(past, "batch_select_indices"):
                    # drop finished rows from the batch (and their KV cache): no compute for them any more
                    idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                    past.batch_select_indices(idx)
                    mask, pos, step_ids = mask[idx], pos[idx], step_ids[idx]
                    active = [active[r] for r in keep]
                mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
                pos = pos[:, -1:] + 1
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=pos,
                    use_cache=True,
                    **{self._cache_arg: past},
                )
                past = _cache_of(out)
                logits = out.logits[:, -1, :].float().cpu()
        self.stats["generated_tokens"] += sum(s.n_sampled for s in seqs)

    def _left_padded(self, prompts: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, attention mask) of the prompts, left-padded to ``width``, on the model's device."""
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _emit_prompt_logprobs(self, batch, prompts, logits, width) -> None:
        r = 0
        for job in batch:
            if job.params.echo_logprobs:
                p = prompts[r]
                start = width - len(p)
                lsm = torch.log_softmax(logits[r, start:-1], -1)
                entries = [TokenLogprob(p[0], self.token_text(p[0]), None, [])]
                for k in range(1, len(p)):
                    entries.append(self.token_logprob(p[k], lsm[k - 1], job.params.top_logprobs))
                job.emit(("prompt_logprobs", entries))
            r += job.params.n


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class EventSink:
    """Bridges the worker thread to an asyncio consumer: ``emit`` is thread-safe, ``get`` is awaited."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()

    def emit(self, event: tuple) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the client is gone
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def get(self) -> tuple:
        return await self.queue.get()
