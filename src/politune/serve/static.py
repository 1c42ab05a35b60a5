"""The ``static`` scheduler (the engine before continuous batching; ``Batching(scheduler="static")``): the worker
takes the oldest request and every other waiting request for the same adapter (up to ``max_batch_rows``
sequences), switches the adapter once and decodes that batch to completion, left-padded, with a KV cache; only
then does it take the next batch. Rows that finish early leave the batch, nobody joins it.

Kept so that ``bench/serve_load.py`` can compare it with the continuous scheduler in the same run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from politune.serve.sequence import Job, Sequence, emit_prompt_logprobs

if TYPE_CHECKING:
    from politune.serve.engine import Engine

log = logging.getLogger("politune")


def take_batch(engine: Engine) -> list[Job] | None:
    """Block until a request waits; pop it and every waiting request for its adapter that still fits."""
    with engine._cv:
        while not engine._pending and not engine._closed:
            engine._cv.wait()
        if engine._closed:
            return None
        first = engine._pending.popleft()
        batch, rows = [first], first.params.n
        for job in list(engine._pending):
            if job.adapter == first.adapter and rows + job.params.n <= engine.max_batch_rows:
                engine._pending.remove(job)
                batch.append(job)
                rows += job.params.n
        return batch


def run(engine: Engine) -> None:
    """The worker loop: one batch at a time until the engine closes."""
    while True:
        batch = take_batch(engine)
        if batch is None:
            return
        batch = [j for j in batch if not j.cancelled]
        if not batch:
            continue
        try:
            decode(engine, batch)
        except Exception as e:  # never kill the worker: report to the requests, keep serving
            log.exception("generation failed")
            for job in batch:
                job.emit(("error", f"generation failed: {type(e).__name__}: {e}"))
            continue
        for job in batch:
            job.emit(("end", None))


@torch.inference_mode()
def decode(engine: Engine, batch: list[Job]) -> None:
    """Decode ``batch`` (jobs of one adapter) to completion."""
    seqs = [Sequence(engine, job, i) for job in batch for i in range(job.params.n)]
    engine.count_rows(len(seqs), batches=1)
    prompts = [job.prompt_ids for job in batch for _ in range(job.params.n)]
    width = max(len(p) for p in prompts)
    ids, mask = engine.left_padded(prompts, width)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with engine.adapter_context(batch[0].adapter):
        echo = any(job.params.echo_logprobs for job in batch)
        out = engine.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=0 if echo else 1,
        )
        logits = out.logits.float()
        if echo:
            emit_prompt_logprobs(engine, batch, prompts, logits, width)
        logits = logits[:, -1, :].cpu()  # sampling and seeds on the CPU (small: rows x vocab)
        for seq in seqs:
            if seq.finished:  # max_tokens == 0 (echo only)
                seq.job.emit(("done", seq.index, "length", 0))
        past = engine.cache_of(out)
        active = list(range(len(seqs)))  # the sequence behind each row of the batch tensors
        for _ in range(max(job.params.max_tokens for job in batch)):
            nxt = []
            for r, i in enumerate(active):
                seq = seqs[i]
                if seq.job.cancelled:
                    seq.finished = True
                nxt.append(engine.pad_id if seq.finished else seq.step(logits[r]))
            keep = [r for r, i in enumerate(active) if not seqs[i].finished]
            if not keep:
                break
            step_ids = torch.tensor(nxt, dtype=torch.long, device=engine.device)[:, None]
            if len(keep) < len(active) and hasattr(past, "batch_select_indices"):
                # drop finished rows from the batch (and their KV cache): no compute for them any more
                idx = torch.tensor(keep, dtype=torch.long, device=engine.device)
                past.batch_select_indices(idx)
                mask, pos, step_ids = mask[idx], pos[idx], step_ids[idx]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
            pos = pos[:, -1:] + 1
            out = engine.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                **{engine.cache_arg: past},
            )
            past = engine.cache_of(out)
            logits = out.logits[:, -1, :].float().cpu()
            engine.stats["steps"] += 1
    engine.stats["generated_tokens"] += sum(s.n_sampled for s in seqs)
