"""``dpo``, ``sft``, ``sft_dpo``: tune a LoRA adapter toward a stance and write a run folder.

Run folder (docs/results.md)::

    OUT/adapter/             PEFT safetensors adapter + README.md model card
    OUT/metrics.jsonl        one row per logged step (loss, rewards/*, tokens_per_s, peak_rss_mb, ...)
    OUT/trajectory.jsonl     {"step", "metrics"} from evaluate(model, tokenizer), if tracking is on
    OUT/summary.json         {"kind": "tune", "method", "stance", "base", "data", "final", ...}
    OUT/config.yaml          the resolved recipe
    OUT/checkpoints/         checkpoint-N (adapter, optimizer, scheduler, RNG, data position), atomic
    OUT/sft/                 (sft_dpo only) the SFT stage's own run folder

Reference model: a fresh LoRA uses the base with its adapter disabled (no second copy). ``sft_dpo`` continues
training the SFT adapter and uses a frozen copy of it (TRL's ``ref`` adapter) as the reference - never the raw
base - so the final adapter holds SFT + DPO and loads on the plain base model.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.config import save_resolved
from politune.errors import PolituneError
from politune.fsutil import atomic_dir, atomic_write_json, atomic_write_jsonl, read_jsonl_log, sha256_dir
from politune.tune.config import (
    TuneConfig,
    check_trl_keys,
    dpo_args,
    hardware_settings,
    load_recipe,
    lora_config,
    sft_args,
)
from politune.tune.data import TrainingData, check_lengths, instruction_data, preference_data

log = logging.getLogger("politune")

Evaluate = Callable[[Any, Any], dict]


@dataclass
class TuneResult:
    adapter_dir: Path
    metrics: dict = field(default_factory=dict)
    out_dir: Path = Path(".")


# --------------------------------------------------------------------------------------------------------
# helpers


def _prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool, keep: tuple[str, ...] = ()) -> None:
    present = [p for p in out_dir.iterdir() if p.name not in keep] if out_dir.exists() else []
    if present and not resume:
        if not overwrite:
            raise PolituneError(f"{out_dir}: output folder is not empty; pass --resume to continue the run in it, "
                                "--overwrite to replace it, or choose another folder")
        for p in present:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _load_base(base: str, cfg: TuneConfig, hw: dict):
    """(model, tokenizer) on the hardware's device/dtype; 4-bit base for QLoRA."""
    from politune.models.loading import load_model, load_tokenizer
    from politune.models.registry import resolve_model

    if cfg.quantization == "4bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise PolituneError("quantization=4bit needs bitsandbytes: pip install 'politune[gpu]'") from None
        import torch
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        path = resolve_model(base)
        qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=hw["dtype"] if hw["dtype"] != torch.float32 else torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=qc, dtype=hw["dtype"],
                                                     use_safetensors=True, device_map={"": hw["device"]})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=hw["gradient_checkpointing"])
        return model, load_tokenizer(path)
    return load_model(base, device=hw["device"], dtype=hw["dtype"])


def _truncate_logs(out_dir: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we continue from (they will be re-made)."""
    for name in ("metrics.jsonl", "trajectory.jsonl"):
        p = out_dir / name
        if p.exists():
            atomic_write_jsonl(p, [r for r in read_jsonl_log(p) if r.get("step", 0) <= step])


def _final_metrics(rows: list[dict], window: int = 5) -> dict:
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return {}
    last = rows[-1]
    keys = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected", "tokens_per_s", "peak_rss_mb"]
    final = {k: last[k] for k in keys if k in last}
    tail = rows[-window:]
    for k in ("loss", "rewards/margins", "rewards/accuracies"):
        vals = [r[k] for r in tail if k in r]
        if vals:
            final[f"{k}_last{len(vals)}_mean"] = round(sum(vals) / len(vals), 6)
    final["step"] = last["step"]
    return final


def _default_evaluator(system: str | None) -> Evaluate | None:
    """The fast compass subset (logprob track) when the compass is installed, else no tracking."""
    try:
        from politune.measure.compass import compass_evaluator
    except ImportError:
        return None
    return compass_evaluator(system=system)


MODEL_CARD = """---
library_name: peft
base_model: {base_hf}
tags: [politune, lora, {method}, political-stance]
---

# politune adapter: {stance_title}

A LoRA adapter trained with [politune](https://github.com/politune/politune) ({method_long}) to move
`{base}` toward the **{stance}** stance on political and economic questions. It is a research artefact
for measuring and steering political leaning, not a product.

| | |
|---|---|
| base model | `{base}` ({base_path}) |
| target stance | {stance} |
| method | {method_long}, loss `{loss}`, beta {beta}{sft_weight} |
| recipe | `{recipe}` (full resolved config in `config.yaml` next to this folder) |
| data | `{data_source}`, {data_n} examples, sha256 `{data_sha}` |
| evaluation data | {eval_data} |
| LoRA | r {r}, alpha {alpha}, targets {targets}{layers} |
| steps | {steps} ({wall:.0f} s on {device}) |
| politune / TRL / PEFT | {v_politune} / {v_trl} / {v_peft} |

## Final training metrics

{metrics_table}

Training metrics (`rewards/...`, `loss`) say how well the adapter separates the chosen from the rejected
answers of its training batches; `eval_...` metrics (when evaluation data was given) are the same on pairs
it was never trained on. Neither is an evaluation of the model's leaning. Measure that with `politune measure compass`
(see the run's `trajectory.jsonl` if tracking was on{trajectory_note}).

## Use

```python
from politune.models import load_model
model, tok = load_model("{base}", adapter="path/to/this/adapter")
```

## Responsible use

This adapter was trained to make a model argue one side of contested political questions. Use it to study
how preference tuning shifts a model's stated views, to test measurement instruments, or as a clearly
labelled persona in research. Do not deploy it to users as a neutral assistant, do not use it to generate
political persuasion or campaign content aimed at real people, and do not present its outputs as facts:
the training data argue positions; they are not a source of facts or statistics. Always disclose that the
model was tuned toward a stance.
"""


def write_model_card(adapter_dir: Path, *, cfg: TuneConfig, base: str, stance: str | None, method: str,
                     data: TrainingData, final: dict, steps: int, wall: float, device: str,
                     trajectory: bool, eval_data: TrainingData | None = None) -> None:
    from politune.models.registry import REGISTRY
    from politune.provenance import package_versions

    v = package_versions()
    entry = REGISTRY.get(base)
    long = {"dpo": "LoRA + DPO", "sft": "LoRA + SFT", "sft_dpo": "LoRA + SFT, then DPO from the SFT adapter"}
    lora = cfg.lora if method != "sft" else (cfg.sft.lora or cfg.lora)
    table = "\n".join(["| metric | value |", "|---|---|"] +
                      [f"| {k} | {round(val, 4) if isinstance(val, float) else val} |" for k, val in final.items()])
    from politune import __version__

    text = MODEL_CARD.format(
        base_hf=(entry.hf_id if entry and entry.hf_id else base), base=base,
        base_path=(entry.description if entry else "local or hub model"),
        stance=stance or "unspecified", stance_title=(stance or "unspecified stance"), method=method,
        method_long=long[method], loss=cfg.loss if method != "sft" else "nll", beta=cfg.beta,
        sft_weight=f", SFT term weight {cfg.sft_weight}" if cfg.sft_weight else "", recipe=cfg.name,
        data_source=data.source, data_n=data.n, data_sha=data.sha256, r=lora.r, alpha=lora.alpha,
        targets=", ".join(lora.targets), layers=f", layers {lora.layers}" if lora.layers else "", steps=steps,
        wall=wall, device=device, v_politune=__version__, v_trl=v["trl"], v_peft=v["peft"],
        metrics_table=table or "(no metrics logged)",
        trajectory_note="" if trajectory else "; it was off for this run",
        eval_data=(f"`{eval_data.source}`, {eval_data.n} examples, sha256 `{eval_data.sha256}`" if eval_data
                   else "none (no held-out evaluation in this run)"))
    (adapter_dir / "README.md").write_text(text, encoding="utf-8")


def _save_adapter(trainer, out_dir: Path) -> Path:
    """Save only the trained ``default`` adapter (not TRL's ``ref`` copy), as PEFT safetensors, atomically."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    dest = out_dir / "adapter"
    if trainer.accelerator.is_main_process:
        with atomic_dir(dest) as tmp:
            model.save_pretrained(tmp, selected_adapters=["default"], safe_serialization=True)
            if (tmp / "default").is_dir():  # PEFT puts a non-"default" selection in a subfolder; flatten
                for p in (tmp / "default").iterdir():
                    os.replace(p, tmp / p.name)
                (tmp / "default").rmdir()
    trainer.accelerator.wait_for_everyone()
    return dest


# --------------------------------------------------------------------------------------------------------
# the one training routine


def _train(method: str, base: str | None, data: Any, cfg: TuneConfig | str | None, out_dir: str | os.PathLike,
           stance: str | None, evaluate: Evaluate | None, resume: bool, overwrite: bool,
           init_adapter: Path | None = None, keep: tuple[str, ...] = (), split: str | None = "train",
           eval_data: Any = None) -> TuneResult:
    import datasets
    import torch
    from datasets import Dataset

    from politune.tune.trainer import (
        MetricsCallback,
        PolituneDPOTrainer,
        PolituneSFTTrainer,
        TrajectoryCallback,
        latest_checkpoint,
    )

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    if cfg is None or isinstance(cfg, str | os.PathLike):
        cfg = load_recipe(cfg or "cpu-smollm2")
    check_trl_keys(cfg)
    base = base or cfg.base
    out = Path(out_dir)
    hw = hardware_settings(cfg)
    # --- everything that can be wrong with the input is checked before any compute ------------------------
    to_rows = preference_data if method == "dpo" else instruction_data
    td = to_rows(data, cfg.system, split)
    log.info("data %s: %d rows (sha256 %s)", td.source, td.n, td.sha256[:12])
    ed = to_rows(eval_data, cfg.system, None) if eval_data is not None else None
    _prepare_out_dir(out, resume, overwrite, keep)
    model, tok = _load_base(base, cfg, hw)
    lora = cfg.lora if method == "dpo" else (cfg.sft.lora or cfg.lora)
    n_layers = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    if init_adapter is None and lora.layers and n_layers is not None and max(lora.layers) >= n_layers:
        raise PolituneError(f"lora.layers: {base} has {n_layers} layers (0-{n_layers - 1}), the recipe asks for "
                            f"{max(lora.layers)}; set lora.layers=null or indices that exist")
    lengths = check_lengths(td.rows, tok, cfg.max_length, td.source)
    if ed is not None:
        check_lengths(ed.rows, tok, cfg.max_length, ed.source)
    ckpt_dir = out / "checkpoints"
    args = (dpo_args if method == "dpo" else sft_args)(cfg, ckpt_dir, hw)
    save_resolved(cfg, out)

    if evaluate is None and cfg.eval_every:
        evaluate = _default_evaluator(cfg.system)

    torch.manual_seed(cfg.seed)
    peft_config = None
    if init_adapter is not None:
        from politune.models.loading import load_adapter

        model = load_adapter(model, init_adapter, trainable=True)
    else:
        peft_config = lora_config(lora)
    ds = Dataset.from_list(td.rows)
    common = dict(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                  eval_dataset=Dataset.from_list(ed.rows) if ed is not None else None)
    try:
        if method == "dpo":
            trainer = PolituneDPOTrainer(**common, politune_loss=cfg.loss, sft_weight=cfg.sft_weight,
                                         step0_check=cfg.step0_check,
                                         share_frozen_layers=cfg.share_frozen_layers)
        else:
            trainer = PolituneSFTTrainer(**common)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise PolituneError(f"TRL rejected the setup: {str(e).splitlines()[0]}") from None

    ckpt = latest_checkpoint(ckpt_dir) if resume else None
    if ckpt is not None:
        _truncate_logs(out, int(ckpt.name.split("-")[-1]))
        log.info("resuming from %s", ckpt)
    else:  # a fresh start (also --resume with no complete checkpoint yet): logs restart too
        for name in ("metrics.jsonl", "trajectory.jsonl"):
            (out / name).unlink(missing_ok=True)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(MetricsCallback(out / "metrics.jsonl", trainer))
    if evaluate is not None:
        cb = TrajectoryCallback(out / "trajectory.jsonl", trainer, evaluate, tok, cfg.eval_every)
        cb.done = {r["step"] for r in read_jsonl_log(out / "trajectory.jsonl")}
        trainer.add_callback(cb)

    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    adapter_dir = _save_adapter(trainer, out)
    rows = read_jsonl_log(out / "metrics.jsonl")
    final = _final_metrics(rows)
    if ed is not None:  # the trained adapter on pairs it never saw: the generalisation figure
        ev = trainer.evaluate()
        final.update({k: round(v, 6) for k, v in ev.items() if k.startswith("eval_") and isinstance(v, float)
                      and not k.endswith(("_runtime", "_per_second"))})
    wall = time.perf_counter() - t0
    if trainer.accelerator.is_main_process:
        from politune.provenance import provenance

        write_model_card(adapter_dir, cfg=cfg, base=base, stance=stance, method=method, data=td, final=final,
                         steps=trainer.state.global_step, wall=wall, device=hw["device"],
                         trajectory=evaluate is not None, eval_data=ed)
        summary = {"kind": "tune", "method": method, "stance": stance, "base": base, "recipe": cfg.name,
                   "adapter": str(adapter_dir), "adapter_hash": sha256_dir(adapter_dir, "*.safetensors"),
                   "data": {"source": td.source, "n": td.n, "sha256": td.sha256, **lengths},
                   "eval_data": {"source": ed.source, "n": ed.n, "sha256": ed.sha256} if ed else None,
                   "final": final, "steps": trainer.state.global_step, "wall_s": round(wall, 1),
                   "resumed_from": ckpt.name if ckpt else None, "step0": getattr(trainer, "step0", None),
                   "hardware": {"device": hw["device"], "dtype": str(hw["dtype"]).removeprefix("torch."),
                                "gradient_checkpointing": hw["gradient_checkpointing"],
                                "processes": trainer.accelerator.num_processes,
                                "backend": getattr(trainer.accelerator.state, "backend", None)},
                   "provenance": provenance()}
        atomic_write_json(out / "summary.json", summary)
    return TuneResult(adapter_dir=adapter_dir, metrics=final, out_dir=out)


# --------------------------------------------------------------------------------------------------------
# public API


def dpo(base: str | None, data: Any, cfg: TuneConfig | str | None = None, out_dir: str | os.PathLike = "runs/dpo",
        stance: str | None = None, evaluate: Evaluate | None = None, resume: bool = False,
        overwrite: bool = False, split: str | None = "train", eval_data: Any = None) -> TuneResult:
    """DPO with a fresh LoRA adapter on ``base`` (reference = base with the adapter disabled).

    ``data``: a ``politune.data`` spec (its ``split``, default train; None = all rows; the spec is recorded as
    the data source in the model card) or a list of ``PreferencePair``; ``cfg``: a ``TuneConfig``,
    a recipe name or YAML path (default ``cpu-smollm2``); ``evaluate(model, tokenizer) -> dict`` is run every
    ``cfg.eval_every`` steps into ``trajectory.jsonl``; ``resume`` continues from the last checkpoint in
    ``out_dir``; ``eval_data`` (a spec, all its rows, or a list of pairs) is scored by the trained adapter at
    the end: ``eval_rewards/accuracies`` etc. in the metrics and model card.
    """
    return _train("dpo", base, data, cfg, out_dir, stance, evaluate, resume, overwrite, split=split,
                  eval_data=eval_data)


def sft(base: str | None, data: Any, cfg: TuneConfig | str | None = None, out_dir: str | os.PathLike = "runs/sft",
        stance: str | None = None, evaluate: Evaluate | None = None, resume: bool = False,
        overwrite: bool = False, split: str | None = "train", eval_data: Any = None) -> TuneResult:
    """Supervised LoRA fine-tuning on instruction examples (``response``) or pairs (their ``chosen``); the
    ``sft:`` section of the recipe overrides lr / epochs / steps / batch / LoRA for this stage."""
    return _train("sft", base, data, cfg, out_dir, stance, evaluate, resume, overwrite, split=split,
                  eval_data=eval_data)


def sft_dpo(base: str | None, data: Any, cfg: TuneConfig | str | None = None,
            out_dir: str | os.PathLike = "runs/sft_dpo", stance: str | None = None,
            evaluate: Evaluate | None = None, resume: bool = False, overwrite: bool = False,
            sft_data: Any = None, split: str | None = "train", eval_data: Any = None) -> TuneResult:
    """SFT (on ``sft_data``, default: the pairs' chosen answers), then DPO that continues the SFT adapter with a
    frozen copy of it as the reference. ``out_dir/sft`` holds the SFT stage; ``out_dir/adapter`` the result."""
    if cfg is None or isinstance(cfg, str | os.PathLike):
        cfg = load_recipe(cfg or "cpu-smollm2")
    out = Path(out_dir)
    # validate both data sets before any compute
    preference_data(data, cfg.system, split)
    if eval_data is not None:
        preference_data(eval_data, cfg.system, None)
    if sft_data is not None:
        instruction_data(sft_data, cfg.system, split)
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise PolituneError(f"{out}: output folder is not empty; pass --resume, --overwrite or another folder")
        shutil.rmtree(out)
    sft_dir = out / "sft"
    if (sft_dir / "summary.json").is_file() and resume:
        log.info("SFT stage already done in %s", sft_dir)
        sft_adapter = sft_dir / "adapter"
    else:
        sft_adapter = sft(base, sft_data if sft_data is not None else data, cfg, sft_dir, stance, None,
                          resume=resume, overwrite=False, split=split).adapter_dir
    res = _train("dpo", base, data, cfg, out, stance, evaluate, resume=resume, overwrite=False,
                 init_adapter=sft_adapter, keep=("sft",), split=split, eval_data=eval_data)
    summary_path = out / "summary.json"
    if summary_path.exists():
        import json

        s = json.loads(summary_path.read_text())
        s["method"] = "sft_dpo"
        s["sft"] = {"dir": str(sft_dir), "adapter": str(sft_adapter)}
        atomic_write_json(summary_path, s)
    return res


def merge(base: str, adapter: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "auto") -> Path:
    """Merge a LoRA adapter into its base and save a full safetensors model (+ tokenizer) at ``out_dir``."""
    from politune.models.loading import load_model

    model, tok = load_model(base, adapter=adapter, device="cpu", dtype=dtype)
    merged = model.merge_and_unload()
    dest = Path(out_dir)
    with atomic_dir(dest) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return dest
