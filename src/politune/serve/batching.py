"""The ``continuous`` scheduler (the default): iteration-level batching, rows of different adapters in one
forward pass.

The worker keeps one running batch, :class:`Rows`: a row per sequence, each with its adapter name, its
next-token logits, and its keys/values in one shared KV cache. Every iteration (:meth:`ContinuousBatcher.step`):

1. **join**: waiting requests that fit in ``max_batch_rows`` (oldest first, never skipping one) are prefilled
   together in one forward pass (left-padded to their longest prompt; when their prompts start with a prefix the
   store holds, only the rest of each prompt runs, on a copy of its KV cache: ``prefix.py``), then merged into
   the running batch: the narrower of the two KV caches (and its attention mask) is left-padded with masked zero
   columns to the wider one's width and the two are concatenated along the batch dimension;
2. **sample**: every row picks its next token from its own logits (its own temperature, top-p, seed, stop
   strings: :class:`~politune.serve.sequence.Sequence`), so newcomers produce their first token at once;
3. **leave**: rows that finished (length, stop, EOS) or were cancelled leave the batch and the KV cache; cache
   columns that no remaining row uses any more (left padding of rows that left) are cut off, so the cache is as
   wide as the longest live row, not as the history of the batch;
4. **decode**: one forward pass for all remaining rows, one token each. Rows of different adapters share it:
   PEFT's ``adapter_names=[...]`` (``"__base__"`` for the bare base) applies each row's LoRA to that row only;
   a batch of one adapter uses ``set_adapter`` / ``disable_adapter`` instead (no per-row gather).

Merging needs a KV cache whose layers are plain ``DynamicLayer`` tensors (Llama-, Mistral-without-sliding-,
Qwen-style models). For any other cache (sliding windows, quantized caches), newcomers wait until the running
batch is empty, so the scheduler still mixes adapters but admits a new group only between groups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from politune.serve.prefix import PrefixStore, prefill_on_prefix
from politune.serve.sequence import Job, Sequence, emit_prompt_logprobs

if TYPE_CHECKING:
    from politune.serve.engine import Engine

log = logging.getLogger("politune")

BASE_ROW = "__base__"  # PEFT's adapter name for a row that runs the bare base model


@dataclass
class Rows:
    """The running batch. ``mask`` [rows, width]: 1 where the KV cache holds a real token of that row (the cache
    is ``width`` tokens long, rows are left-padded); ``pos`` [rows, 1]: position id of each row's last token;
    ``logits`` [rows, vocab], float32 on the CPU: each row's next-token logits."""

    seqs: list[Sequence]
    names: list[str]
    cache: Any
    mask: torch.Tensor
    pos: torch.Tensor
    logits: torch.Tensor


def cache_layers(cache: Any) -> list[Any] | None:
    """The cache's layers when each one is a plain dynamic layer whose key/value tensors can be sliced and
    concatenated; ``None`` for anything else."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    for layer in layers:
        keys = getattr(layer, "keys", None)
        if type(layer) is not DynamicLayer or not isinstance(keys, torch.Tensor) or keys.dim() != 4:
            return None
    return list(layers)


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zero columns in front of the sequence dimension (-2 for keys/values, -1 for masks) up to ``width``."""
    seq_dim = -2 if t.dim() == 4 else -1
    missing = width - t.shape[seq_dim]
    if missing == 0:
        return t
    return F.pad(t, (0, 0, missing, 0) if seq_dim == -2 else (missing, 0))


def merge(a: Rows, b: Rows) -> Rows:
    """``a`` then ``b`` as one batch: both caches left-padded to the wider width, concatenated row-wise."""
    width = max(a.mask.shape[1], b.mask.shape[1])
    la, lb = cache_layers(a.cache), cache_layers(b.cache)
    if la is None or lb is None or len(la) != len(lb):
        raise RuntimeError("these KV caches cannot be merged")
    for x, y in zip(la, lb, strict=True):
        x.keys = torch.cat([_pad_left(x.keys, width), _pad_left(y.keys, width)], 0)
        x.values = torch.cat([_pad_left(x.values, width), _pad_left(y.values, width)], 0)
    return Rows(
        a.seqs + b.seqs,
        a.names + b.names,
        a.cache,
        torch.cat([_pad_left(a.mask, width), _pad_left(b.mask, width)], 0),
        torch.cat([a.pos, b.pos], 0),
        torch.cat([a.logits, b.logits], 0),
    )


def select(b: Rows, keep: list[int]) -> None:
    """Keep only the rows ``keep`` (in place), then cut cache columns no remaining row uses."""
    idx = torch.tensor(keep, dtype=torch.long, device=b.mask.device)
    b.cache.batch_select_indices(idx)
    b.seqs = [b.seqs[r] for r in keep]
    b.names = [b.names[r] for r in keep]
    b.mask, b.pos = b.mask[idx], b.pos[idx]
    b.logits = b.logits[torch.tensor(keep, dtype=torch.long)]
    layers = cache_layers(b.cache)
    if layers is None:
        return
    used = b.mask.any(0)
    first = int(torch.argmax(used.to(torch.int8)))  # the first column some row still uses
    if first > 0:
        for layer in layers:
            layer.keys, layer.values = layer.keys[:, :, first:, :], layer.values[:, :, first:, :]
        b.mask = b.mask[:, first:]


class ContinuousBatcher:
    """Owns the running batch of an :class:`~politune.serve.engine.Engine` (see the module docstring)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.rows: Rows | None = None
        # False once the model's cache proved unmergeable: then admit only into an empty batch
        self.mergeable = True
        self.prefixes = PrefixStore()  # shared prompt starts already encoded (prefix.py)

    @property
    def n_rows(self) -> int:
        return len(self.rows.seqs) if self.rows is not None else 0

    def run(self) -> None:
        """The worker loop: step while there is work, sleep while there is none, until the engine closes."""
        while self.engine.wait_for_work(idle=self.rows is None):
            try:
                self.step()
            except Exception as e:  # never kill the worker: report to the requests, keep serving
                log.exception("generation failed")
                self.fail(f"generation failed: {type(e).__name__}: {e}")
        self.fail("the server is shutting down")

    @torch.inference_mode()
    def step(self) -> bool:
        """One iteration: join, sample, leave, decode (see the module docstring). Never blocks; returns whether
        work remains (running rows or waiting requests)."""
        eng = self.engine
        busy = self.n_rows if (self.mergeable or self.rows is None) else eng.max_batch_rows
        jobs = eng.admit(busy)
        if jobs:
            self._join(jobs)
        if self.rows is not None:
            self._advance(self.rows)
        return self.rows is not None or eng.queue_length > 0

    def fail(self, message: str) -> None:
        """Drop the running batch, telling each of its requests ``message``."""
        if self.rows is None:
            return
        for job in {id(s.job): s.job for s in self.rows.seqs}.values():
            job.emit(("error", message))
        self.rows = None

    def _join(self, jobs: list[Job]) -> None:
        try:
            new = self._prefill(jobs)
        except Exception as e:  # only the newcomers fail; the running rows go on
            log.exception("prefill failed")
            for job in jobs:
                job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
            return
        if new is None:
            return
        if cache_layers(new.cache) is None:
            self.mergeable = False
        if self.rows is None:
            self.rows = new
            return
        try:
            self.rows = merge(self.rows, new)
        except Exception as e:  # the newcomers hear it here; the running batch is failed by run()
            for job in jobs:
                job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
            raise
        self.engine.stats["joins"] += 1

    def _prefill(self, jobs: list[Job]) -> Rows | None:
        """The newcomers' prompts in one forward pass; echo log-probs emitted; their rows (without the ones
        that are already done: ``max_tokens`` 0)."""
        eng = self.engine
        seqs = [Sequence(eng, job, i) for job in jobs for i in range(job.params.n)]
        prompts = [job.prompt_ids for job in jobs for _ in range(job.params.n)]
        names = [job.adapter or BASE_ROW for job in jobs for _ in range(job.params.n)]
        eng.count_rows(len(seqs), batches=1)
        echo = any(job.params.echo_logprobs for job in jobs)
        n_pre, entries = (0, []) if echo or not self.mergeable else self.prefixes.plan(eng, prompts, names)
        if n_pre:  # the shared start of the prompts is in the prefix store: run only the rest
            out, mask, last_pos, cache = prefill_on_prefix(eng, prompts, names, n_pre, entries)
            eng.stats["prefix_rows"] += len(prompts)
            eng.stats["prefix_tokens"] += n_pre * len(prompts)
        else:
            width = max(len(p) for p in prompts)
            ids, mask = eng.left_padded(prompts, width)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = eng.forward(ids, mask, pos, None, names, logits_to_keep=0 if echo else 1)
            last_pos, cache = pos[:, -1:], eng.cache_of(out)
            if echo:
                emit_prompt_logprobs(eng, jobs, prompts, out.logits.float(), width)
        for seq in seqs:
            if seq.finished:  # max_tokens == 0 (echo only)
                seq.job.emit(("done", seq.index, "length", 0))
        rows = Rows(seqs, names, cache, mask, last_pos, out.logits[:, -1, :].float().cpu())
        return self._leave(rows)

    def _advance(self, b: Rows) -> None:
        eng = self.engine
        tokens = []
        for r, seq in enumerate(b.seqs):
            if seq.job.cancelled:
                seq.finished = True
            tokens.append(eng.pad_id if seq.finished else seq.step(b.logits[r]))
        tokens = [t for t, s in zip(tokens, b.seqs, strict=True) if not s.finished]
        self.rows = self._leave(b)
        if self.rows is None:
            return
        step_ids = torch.tensor(tokens, dtype=torch.long, device=eng.device)[:, None]
        b.mask = torch.cat([b.mask, torch.ones_like(step_ids)], dim=1)
        b.pos = b.pos + 1
        out = eng.forward(step_ids, b.mask, b.pos, b.cache, b.names)
        b.cache = eng.cache_of(out)
        b.logits = out.logits[:, -1, :].float().cpu()
        stats = eng.stats
        stats["steps"] += 1
        stats["mixed_steps"] += len(set(b.names)) > 1
        stats["max_batch_rows"] = max(stats["max_batch_rows"], len(b.seqs))

    def _leave(self, b: Rows) -> Rows | None:
        """Finished rows leave ``b`` (in place); each request whose every sequence finished gets ``end``.
        Returns ``b``, or ``None`` when no row is left."""
        keep = [r for r, s in enumerate(b.seqs) if not s.finished]
        if len(keep) == len(b.seqs):
            return b
        live_jobs = {id(b.seqs[r].job) for r in keep}
        ended: set[int] = set()
        for seq in b.seqs:
            if not seq.finished:
                continue
            self.engine.stats["generated_tokens"] += seq.n_sampled
            if id(seq.job) not in live_jobs and id(seq.job) not in ended:
                ended.add(id(seq.job))
                seq.job.emit(("end", None))
        if not keep:
            return None
        select(b, keep)
        return b
