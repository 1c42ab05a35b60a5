"""politune's DPO trainer: TRL's ``DPOTrainer`` with our loss, a step-0 reference check, atomic checkpoints,
and log-probs computed only where they are needed.

What differs from ``trl.DPOTrainer`` (everything else - data preparation, collator, PEFT wiring, the ``ref``
adapter after SFT, accelerate / DeepSpeed / FSDP - is TRL's):

- the loss is :func:`politune.tune.losses.preference_loss` (one pure, tested function);
- log-probs are computed from the LM head applied to the completion tokens only (TRL's fused head scores every
  position, prompt and padding included, on a CPU);
- the frozen layers below the LoRA layers run once per batch, each prompt once (:mod:`politune.tune.prefix`);
- at step 0 the policy must equal its reference (fresh LoRA: adapter disabled; after SFT: a frozen copy of the
  SFT adapter) and the loss must be its zero-margin value (ln 2 for DPO); otherwise training stops with a reason;
- checkpoints are written into a staging folder and renamed into place, so a kill -9 or a full disk during a
  save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from accelerate.utils import is_peft_model
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.sft_trainer import SFTTrainer
from trl.trainer.utils import use_adapter

from politune.errors import PolituneError
from politune.fsutil import _fsync_dir
from politune.models.loading import CausalLM, Tokenizer
from politune.tune.config import LossSpec
from politune.tune.losses import preference_loss, step0_expected
from politune.tune.prefix import decoder_of, first_adapted_layer, only_layers, shared_prefix

log = logging.getLogger("politune")

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "politune-complete.json"


class Step0CheckError(PolituneError):
    """The policy does not start from its reference: DPO would optimise the wrong objective."""


def completion_logps(
    model: CausalLM,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    inputs_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the completion tokens: ``(logps (N, K), mask (N, K))``, zero outside the mask.

    Only completion positions go through the LM head (see :func:`fp32_lm_head`): prompt and padding positions
    of the span from the batch's first completion position to the end are never scored.
    ``inputs_embeds``: hidden states to start from instead of ``input_ids`` (see :func:`shared_prefix`).
    """
    shift_mask = completion_mask[:, 1:].bool()
    cols = shift_mask.any(dim=0).nonzero()
    start = int(cols[0]) if len(cols) else input_ids.size(1) - 2
    keep = input_ids.size(1) - start  # positions start .. L-1 (the last one predicts nothing)
    mask = shift_mask[:, start:]
    select = torch.cat([mask, mask.new_zeros(mask.size(0), 1)], dim=1)  # over the ``keep`` head positions
    feed = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    with fp32_lm_head(model, select):
        out = model(**feed, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep)
    labels = input_ids[:, start + 1 :]
    logits = out.logits.float()
    if logits.dim() == 3:  # a head that is not one Linear: every position was scored
        logits = logits[:, :-1][mask]
    picked = torch.gather(logits, 1, labels[mask].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    token_logps = picked.new_zeros(mask.shape).masked_scatter(mask, picked)
    return token_logps, mask


@contextlib.contextmanager
def fp32_lm_head(model: CausalLM, select: torch.Tensor | None = None) -> Iterator[None]:
    """Run the LM head in fp32 even under bf16 autocast, on the ``select``-ed positions only.

    Log-probs are differences of logits of size ~10-30, where bf16 keeps ~2 decimal digits: a bf16 head would put
    ~0.1-nat noise on every token's log-prob. The head (576 x 49152 on SmolLM2: as costly per token as the
    eight adapted layers) runs as one 2-D fp32 matmul over the completion tokens alone: with ``select`` (a bool
    mask over the positions the model hands the head), the logits come back flattened, ``(selected, vocab)``.
    """
    inner: CausalLM = getattr(model, "module", model)  # DDP wraps the model in ``.module``
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Linear):
        yield
        return
    linear = head.forward

    def forward(input: torch.Tensor) -> torch.Tensor:
        x = input if select is None else input[select]
        if not torch.is_autocast_enabled(x.device.type):  # autocast is entered inside the prepared forward
            return linear(x)
        with torch.autocast(x.device.type, enabled=False):
            bias = None if head.bias is None else head.bias.float()
            # 2-D: one matmul (a 3-D input takes a slower batched path)
            flat = x.reshape(-1, x.size(-1)).float()
            return torch.nn.functional.linear(flat, head.weight.float(), bias).view(*x.shape[:-1], -1)

    # the ignore: an instance attribute shadows Linear.forward on purpose, for this context only (deleted below)
    head.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        del head.forward


if (
    TYPE_CHECKING
):  # the mixin's methods use Trainer's attributes; at run time it sits before a Trainer in the MRO
    _TrainerBase = Trainer
else:
    _TrainerBase = object


class AtomicCheckpointMixin(_TrainerBase):
    """Write ``checkpoint-N`` into ``.staging`` and rename it into place once complete, then rotate."""

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:  # noqa: D401 - Trainer hook
        if self.args.output_dir is None:
            raise PolituneError("TrainingArguments.output_dir is not set: nowhere to save checkpoints")
        run_dir = Path(self.args.output_dir)
        staging = run_dir / ".staging"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        out, limit = self.args.output_dir, self.args.save_total_limit
        self.args.output_dir, self.args.save_total_limit = str(staging), None
        try:
            super()._save_checkpoint(model, trial)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            last = latest_checkpoint(run_dir)
            raise PolituneError(
                f"saving checkpoint at step {self.state.global_step} failed ({e.strerror or e}); "
                f"the previous checkpoint is intact: {last}"
            ) from None
        finally:
            self.args.output_dir, self.args.save_total_limit = out, limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            name = f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            src, dst = staging / name, run_dir / name
            (src / COMPLETE_MARKER).write_text(f'{{"step": {self.state.global_step}}}\n')
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(src, dst)
            _fsync_dir(run_dir)
            shutil.rmtree(staging, ignore_errors=True)
            stale = list_checkpoints(run_dir)[:-limit] if limit is not None and limit > 0 else []
            for old in stale:  # a limit of None or <= 0 keeps every checkpoint, as in Trainer
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints (marker present), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        p
        for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and (p / COMPLETE_MARKER).is_file() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


class PolituneDPOTrainer(AtomicCheckpointMixin, DPOTrainer):
    """``DPOTrainer`` + politune loss (sigmoid/ipo/hinge/robust/simpo, RPO term) + step-0 check."""

    def __init__(
        self,
        *args: Any,
        loss: LossSpec,
        step0_check: bool = True,
        share_frozen_layers: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Frozen bottom layers shared by policy and reference: only for a PEFT policy whose reference is the same
        # module (adapter disabled / ``ref`` adapter), without DeepSpeed/FSDP (which own the forward).
        self.prefix_layers = 0
        if (
            share_frozen_layers
            and self.ref_model is None
            and is_peft_model(self.model)
            and not self.is_deepspeed_enabled
            and not self.is_fsdp_enabled
            and not self.args.gradient_checkpointing
            and decoder_of(self.model) is not None
        ):
            self.prefix_layers = first_adapted_layer(self.model)
        self.loss = loss
        self.step0_check = step0_check
        self.step0: dict[str, Any] | None = None
        self.tokens_seen = 0

    def _reference_context(self) -> contextlib.AbstractContextManager[Any]:
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        return contextlib.nullcontext()

    def _frozen_hidden(
        self, ids: torch.Tensor, am: torch.Tensor, cm: torch.Tensor, k: int
    ) -> tuple[Any, torch.Tensor]:
        """(decoder, hidden states after its first ``k`` frozen layers) for policy and reference alike. The
        decoder is called directly, not through the prepared model's forward where accelerate enters autocast:
        it is entered here, or these layers run in fp32 (on the 2-core CPU: 1.35 s of a 3.9 s step)."""
        decoder = decoder_of(self.accelerator.unwrap_model(self.model))
        with self.accelerator.autocast():
            return decoder, shared_prefix(decoder, ids, am, k, completion_mask=cm)

    def _compute_loss(
        self, model: CausalLM, inputs: dict[str, torch.Tensor], return_outputs: bool
    ) -> torch.Tensor | tuple[torch.Tensor, None]:
        mode = "train" if model.training else "eval"
        ids, am, cm = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        k = 0 if self.precompute_ref_logps else self.prefix_layers
        if k:
            decoder, h = self._frozen_hidden(ids, am, cm, k)
            with only_layers(decoder, slice(k, None)):
                token_logps, mask = completion_logps(model, ids, am, cm, inputs_embeds=h)
                with torch.no_grad(), self._reference_context():
                    ref_token_logps, _ = completion_logps(self.model, ids, am, cm, inputs_embeds=h)
        else:
            token_logps, mask = completion_logps(model, ids, am, cm)
        logps = token_logps.sum(dim=1)
        lengths = mask.sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2)
        chosen_len, rejected_len = lengths.chunk(2)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        elif k:
            ref_chosen, ref_rejected = ref_token_logps.sum(dim=1).chunk(2)
        else:
            with torch.no_grad(), self._reference_context():
                ref_token_logps, _ = completion_logps(self.ref_model or self.model, ids, am, cm)
            ref_chosen, ref_rejected = ref_token_logps.sum(dim=1).chunk(2)
        chosen_nll = None
        if self.loss.sft_weight > 0:
            c_tok, c_mask = token_logps.chunk(2)[0], mask.chunk(2)[0]
            chosen_nll = -c_tok.sum() / c_mask.sum().clamp(min=1)
        out = preference_loss(
            chosen_logps,
            rejected_logps,
            ref_chosen,
            ref_rejected,
            self.loss,
            lengths=(chosen_len, rejected_len),
            chosen_nll=chosen_nll,
        )
        if mode == "train" and self.state.global_step == 0 and self.step0 is None:
            self._check_step0(
                logps.detach(),
                torch.cat([ref_chosen, ref_rejected]).detach(),
                float(out.preference_loss.detach()),
            )
        if mode == "train":
            self.tokens_seen += int(am.sum())
        g = self.accelerator.gather_for_metrics
        m = self._metrics[mode]
        c, r = g(out.chosen_rewards), g(out.rejected_rewards)
        m["rewards/chosen"].append(c.mean().item())
        m["rewards/rejected"].append(r.mean().item())
        m["rewards/accuracies"].append((c > r).float().mean().item())
        m["rewards/margins"].append((c - r).mean().item())
        m["logps/chosen"].append(g(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(g(rejected_logps.detach()).mean().item())
        m["loss/preference"].append(float(out.preference_loss.detach()))
        return (out.loss, None) if return_outputs else out.loss

    def _check_step0(self, policy: torch.Tensor, ref: torch.Tensor, pref_loss: float) -> None:
        expected = step0_expected(self.loss.name, self.loss.beta)
        diff = float((policy - ref).abs().max())
        self.step0 = {
            "loss": pref_loss,
            "expected_loss": expected,
            "max_abs_logp_diff": diff,
            "ok": abs(pref_loss - expected) <= 0.01 and diff <= 1e-3,
        }
        if self.step0_check and not self.step0["ok"]:
            raise Step0CheckError(
                f"step-0 check failed: preference loss {pref_loss:.4f} (expected {expected:.4f} +- 0.01) and "
                f"policy vs reference log-probs differ by up to {diff:.4g} (expected 0): the policy does not start "
                "from its reference, so DPO would optimise the wrong objective (an adapter that is not freshly "
                "zero-initialised, a reference that is the raw base after SFT, or dropout left on); "
                "set step0_check=false only if this is intended"
            )


class PolituneSFTTrainer(AtomicCheckpointMixin, SFTTrainer):
    """``SFTTrainer`` with atomic checkpoints; counts tokens for tokens/s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen = 0
        self.step0: dict[str, Any] | None = None  # no step-0 check in SFT; read as the DPO trainer's

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if model.training and "attention_mask" in inputs:
            self.tokens_seen += int(inputs["attention_mask"].sum())
        loss: torch.Tensor | tuple[torch.Tensor, Any] = super().compute_loss(  # type: ignore[no-untyped-call]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )  # transformers' Trainer.compute_loss is unannotated
        return loss


# A politune trainer, either kind (what the run folder, the callbacks and the summary work with).
PolituneTrainer: TypeAlias = PolituneDPOTrainer | PolituneSFTTrainer


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class MetricsCallback(TrainerCallback):
    """Adds tokens/s and peak memory to every log row and appends it to ``metrics.jsonl`` (main process)."""

    def __init__(self, path: Path, trainer: PolituneTrainer) -> None:
        self.path, self.trainer = path, trainer
        self._t = time.perf_counter()
        self._tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._t, self._tokens = time.perf_counter(), self.trainer.tokens_seen

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        from politune.fsutil import append_jsonl

        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
        prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
        if not prefix:  # a training log: throughput and memory since the last one (an evaluation has neither)
            now, tokens = time.perf_counter(), self.trainer.tokens_seen
            row["tokens_per_s"] = round(
                (tokens - self._tokens) * self.trainer.accelerator.num_processes / max(now - self._t, 1e-9), 1
            )
            row["peak_rss_mb"] = round(peak_rss_mb(), 1)
            if torch.cuda.is_available():
                row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self._t, self._tokens = now, tokens
        append_jsonl(self.path, row)
        parts = "  ".join(
            f"{prefix}{k.split('/')[-1]} {row[prefix + k]:.4g}"
            for k in ("loss", "rewards/accuracies", "rewards/margins")
            if isinstance(row.get(prefix + k), float)
        )
        if prefix:
            log.info("eval at step %d: %s", state.global_step, parts)
        else:
            log.info(
                "step %d/%d  %s  %.0f tok/s", state.global_step, state.max_steps, parts, row["tokens_per_s"]
            )


class TrajectoryCallback(TrainerCallback):
    """Every ``every`` steps (and at the start and end) run ``evaluate(model, tokenizer) -> dict`` on the model
    being trained and append ``{"step", "metrics"}`` to ``trajectory.jsonl``."""

    def __init__(
        self,
        path: Path,
        trainer: Trainer,
        evaluate: Callable[[CausalLM, Tokenizer], dict[str, Any]],
        tokenizer: Tokenizer,
        every: int,
    ) -> None:
        self.path, self.trainer, self.evaluate, self.tokenizer, self.every = (
            path,
            trainer,
            evaluate,
            tokenizer,
            every,
        )
        self.done: set[int] = set()

    def _run(self, state: TrainerState) -> None:
        from politune.fsutil import append_jsonl

        if state.global_step in self.done:
            return
        self.done.add(state.global_step)
        if not state.is_world_process_zero:
            return
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        model.eval()
        t = time.perf_counter()
        try:
            with torch.no_grad():
                metrics = self.evaluate(model, self.tokenizer)
        finally:
            if was_training:
                model.train()
        if not isinstance(metrics, dict):
            raise PolituneError(f"evaluate() must return a dict of metrics, got {type(metrics).__name__}")
        append_jsonl(
            self.path,
            {"step": state.global_step, "metrics": metrics, "seconds": round(time.perf_counter() - t, 2)},
        )

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._run(state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.every and state.global_step % self.every == 0:
            self._run(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._run(state)
