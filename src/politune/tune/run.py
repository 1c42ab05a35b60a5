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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.config import save_resolved
from politune.errors import PolituneError
from politune.fsutil import atomic_dir, atomic_write_json, read_jsonl_log, sha256_dir
from politune.models.loading import CausalLM, Tokenizer
from politune.tune.card import CardFacts, write_model_card
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
from politune.tune.folder import final_metrics, prepare_out_dir, save_adapter, truncate_logs

if TYPE_CHECKING:
    from politune.tune.trainer import PolituneTrainer

log = logging.getLogger("politune")

Evaluate = Callable[[CausalLM, Tokenizer], dict[str, Any]]  # (model, tokenizer) -> metrics


@dataclass
class TuneResult:
    adapter_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    out_dir: Path = Path(".")


@dataclass
class TuneOptions:
    """How one run goes beside its data and recipe (as TRL's trainer arguments): where it writes, the stance it
    records, resume or overwrite, which split it trains on and what it evaluates."""

    out_dir: str | os.PathLike[str] | None = None  # the run folder (default: runs/<method>)
    stance: str | None = None  # recorded in the model card and summary.json
    resume: bool = False  # continue from the last checkpoint in out_dir
    overwrite: bool = False  # replace what is in out_dir
    split: str | None = "train"  # the split of a ``politune.data`` spec (None: all rows)
    eval_data: Any = None  # held-out pairs scored by the trained adapter at the end (a spec: all its rows)
    evaluate: Evaluate | None = None  # evaluate(model, tokenizer) -> dict every cfg.eval_every steps
    sft_data: Any = None  # sft_dpo only: the SFT stage's data (default: the pairs' chosen answers)

    def run_dir(self, method: str) -> Path:
        """The run folder: ``out_dir``, else ``runs/<method>``."""
        return Path(self.out_dir) if self.out_dir is not None else Path("runs") / method


@dataclass
class _Job:
    """One training run, its inputs checked: everything ``_train`` needs."""

    method: str  # what is trained: "dpo" | "sft"
    base: str
    cfg: TuneConfig
    out: Path
    stance: str | None
    data: TrainingData
    eval_data: TrainingData | None
    evaluate: Evaluate | None
    resume: bool
    init_adapter: Path | None = None  # continue this adapter (sft_dpo's DPO stage) instead of a fresh LoRA
    hw: dict[str, Any] = field(default_factory=dict)  # device, dtype, checkpointing (hardware_settings)
    label: str = ""  # the method recorded in the outputs (default: method)
    extra: dict[str, Any] = field(default_factory=dict)  # added to summary.json

    def facts(self) -> CardFacts:
        return CardFacts(
            self.cfg,
            self.base,
            self.stance,
            self.label or self.method,
            self.data,
            self.eval_data,
            self.evaluate is not None,
        )


# --------------------------------------------------------------------------------------------------------
# helpers


def _load_base(base: str, cfg: TuneConfig, hw: dict[str, Any]) -> tuple[CausalLM, Tokenizer]:
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
        qc = BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # transformers: __init__ unannotated
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=hw["dtype"] if hw["dtype"] != torch.float32 else torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            path,
            quantization_config=qc,
            dtype=hw["dtype"],
            use_safetensors=True,
            device_map={"": hw["device"]},
        )
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]  # PEFT: unannotated
            model, use_gradient_checkpointing=hw["gradient_checkpointing"]
        )
        return model, load_tokenizer(path)
    return load_model(base, device=hw["device"], dtype=hw["load_dtype"])


def _default_evaluator(system: str | None) -> Evaluate:
    """The fast compass subset (logprob track): the trajectory a run tracks by default."""
    from politune.measure.compass import compass_evaluator

    return compass_evaluator(system=system)


def _recipe(cfg: TuneConfig | str | os.PathLike[str] | None) -> TuneConfig:
    if cfg is None or isinstance(cfg, str | os.PathLike):
        cfg = load_recipe(cfg or "cpu-smollm2")
    return cfg


def _job(method: str, base: str | None, data: Any, cfg: TuneConfig, out: Path, opts: TuneOptions) -> _Job:
    """Check everything that can be wrong with the input before any compute."""
    check_trl_keys(cfg)
    hw = hardware_settings(cfg)
    to_rows = preference_data if method == "dpo" else instruction_data
    td = to_rows(data, cfg.system, opts.split)
    log.info("data %s: %d rows (sha256 %s)", td.source, td.n, td.sha256[:12])
    ed = to_rows(opts.eval_data, cfg.system, None) if opts.eval_data is not None else None
    evaluate = opts.evaluate
    if evaluate is None and cfg.eval_every:
        evaluate = _default_evaluator(cfg.system)
    return _Job(method, base or cfg.base, cfg, out, opts.stance, td, ed, evaluate, opts.resume, hw=hw)


def _build_trainer(
    job: _Job, hw: dict[str, Any]
) -> tuple[PolituneTrainer, Tokenizer, dict[str, int | float]]:
    """(trainer, tokenizer, data lengths): the base model with a fresh LoRA (or ``job.init_adapter``) in TRL."""
    import torch
    from datasets import Dataset

    from politune.tune.trainer import PolituneDPOTrainer, PolituneSFTTrainer

    cfg = job.cfg
    model, tok = _load_base(job.base, cfg, hw)
    lora = cfg.lora if job.method == "dpo" else (cfg.sft.lora or cfg.lora)
    n_layers = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    if job.init_adapter is None and lora.layers and n_layers is not None and max(lora.layers) >= n_layers:
        raise PolituneError(
            f"lora.layers: {job.base} has {n_layers} layers (0-{n_layers - 1}), the recipe asks "
            f"for {max(lora.layers)}; set lora.layers=null or indices that exist"
        )
    lengths = check_lengths(job.data.rows, tok, cfg.max_length, job.data.source)
    if job.eval_data is not None:
        check_lengths(job.eval_data.rows, tok, cfg.max_length, job.eval_data.source)
    args = (dpo_args if job.method == "dpo" else sft_args)(cfg, job.out / "checkpoints", hw)
    save_resolved(cfg, job.out)
    torch.manual_seed(cfg.seed)
    peft_config = None
    if job.init_adapter is not None:
        from politune.models.loading import load_adapter

        model = load_adapter(model, job.init_adapter, trainable=True)
    else:
        peft_config = lora_config(lora)
    common = dict(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(job.data.rows),
        processing_class=tok,
        peft_config=peft_config,
        eval_dataset=Dataset.from_list(job.eval_data.rows) if job.eval_data is not None else None,
    )
    trainer: PolituneDPOTrainer | PolituneSFTTrainer
    try:
        if job.method == "dpo":
            trainer = PolituneDPOTrainer(
                **common,
                loss=cfg.loss_spec(),
                step0_check=cfg.step0_check,
                share_frozen_layers=cfg.share_frozen_layers,
            )
        else:
            trainer = PolituneSFTTrainer(**common)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise PolituneError(f"TRL rejected the setup: {str(e).splitlines()[0]}") from None
    return trainer, tok, lengths


def _start_logs(job: _Job, trainer: PolituneTrainer, tok: Tokenizer) -> Path | None:
    """The checkpoint to resume from (None: a fresh start), with the metrics and trajectory logs made to
    match it and their callbacks attached."""
    from transformers.trainer_callback import PrinterCallback

    from politune.tune.trainer import MetricsCallback, TrajectoryCallback, latest_checkpoint

    out = job.out
    ckpt = latest_checkpoint(out / "checkpoints") if job.resume else None
    if ckpt is not None:
        truncate_logs(out, int(ckpt.name.split("-")[-1]))
        log.info("resuming from %s", ckpt)
    else:  # a fresh start (also --resume with no complete checkpoint yet): logs restart too
        for name in ("metrics.jsonl", "trajectory.jsonl"):
            (out / name).unlink(missing_ok=True)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(MetricsCallback(out / "metrics.jsonl", trainer))
    if job.evaluate is not None:
        cb = TrajectoryCallback(out / "trajectory.jsonl", trainer, job.evaluate, tok, job.cfg.eval_every)
        cb.done = {r["step"] for r in read_jsonl_log(out / "trajectory.jsonl")}
        trainer.add_callback(cb)
    return ckpt


def _summary(
    job: _Job, trainer: PolituneTrainer, adapter_dir: Path, final: dict[str, Any], run: dict[str, Any]
) -> dict[str, Any]:
    from politune.hardware import dtype_name
    from politune.provenance import provenance

    td, ed, hw = job.data, job.eval_data, run["hw"]
    return {
        "kind": "tune",
        "method": job.label or job.method,
        "stance": job.stance,
        "base": job.base,
        "recipe": job.cfg.name,
        "adapter": str(adapter_dir),
        "adapter_hash": sha256_dir(adapter_dir, "*.safetensors"),
        "data": {"source": td.source, "n": td.n, "sha256": td.sha256, **run["lengths"]},
        "eval_data": {"source": ed.source, "n": ed.n, "sha256": ed.sha256} if ed else None,
        "final": final,
        "steps": trainer.state.global_step,
        "wall_s": round(run["wall"], 1),
        "resumed_from": run["ckpt"].name if run["ckpt"] else None,
        "step0": getattr(trainer, "step0", None),
        "hardware": {
            "device": hw["device"],
            "dtype": dtype_name(hw["dtype"]),
            "weights_dtype": dtype_name(hw["load_dtype"]),
            "dtype_choice": hw["dtype_choice"],
            "gradient_checkpointing": hw["gradient_checkpointing"],
            "processes": trainer.accelerator.num_processes,
            "backend": getattr(trainer.accelerator.state, "backend", None),
        },
        **job.extra,
        "provenance": provenance(),
    }


def _train(job: _Job) -> TuneResult:
    """The one training routine: load, train (resuming if asked), save the adapter, its card and summary."""
    import datasets

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    hw = job.hw
    trainer, tok, lengths = _build_trainer(job, hw)
    ckpt = _start_logs(job, trainer, tok)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    adapter_dir = save_adapter(trainer, job.out)
    final = final_metrics(read_jsonl_log(job.out / "metrics.jsonl"))
    if job.eval_data is not None:  # the trained adapter on pairs it never saw: the generalisation figure
        ev = trainer.evaluate()
        final.update(
            {
                k: round(v, 6)
                for k, v in ev.items()
                if k.startswith("eval_")
                and isinstance(v, float)
                and not k.endswith(("_runtime", "_per_second"))
            }
        )
    wall = time.perf_counter() - t0
    if trainer.accelerator.is_main_process:
        write_model_card(adapter_dir, job.facts(), final, trainer.state.global_step, wall, hw["device"])
        run = {"hw": hw, "lengths": lengths, "wall": wall, "ckpt": ckpt}
        atomic_write_json(job.out / "summary.json", _summary(job, trainer, adapter_dir, final, run))
    return TuneResult(adapter_dir=adapter_dir, metrics=final, out_dir=job.out)


# --------------------------------------------------------------------------------------------------------
# public API


def dpo(
    base: str | None, data: Any, cfg: TuneConfig | str | None = None, options: TuneOptions | None = None
) -> TuneResult:
    """DPO with a fresh LoRA adapter on ``base`` (reference = base with the adapter disabled).

    ``data``: a ``politune.data`` spec (its ``options.split``, default train; None = all rows; the spec is
    recorded as the data source in the model card) or a list of ``PreferencePair``; ``cfg``: a ``TuneConfig``,
    a recipe name or YAML path (default ``cpu-smollm2``). ``options``: the run folder ``out_dir`` (default
    ``runs/dpo``), the ``stance`` recorded; ``resume`` continues from the last checkpoint in ``out_dir``,
    ``overwrite`` replaces what is there; ``evaluate(model, tokenizer) -> dict`` is run every ``cfg.eval_every``
    steps into ``trajectory.jsonl``; ``eval_data`` (a spec, all its rows, or a list of pairs) is scored by the
    trained adapter at the end: ``eval_rewards/accuracies`` etc. in the metrics and card.
    """
    return _tune_one("dpo", base, data, cfg, options or TuneOptions())


def sft(
    base: str | None, data: Any, cfg: TuneConfig | str | None = None, options: TuneOptions | None = None
) -> TuneResult:
    """Supervised LoRA fine-tuning on instruction examples (``response``) or pairs (their ``chosen``); the
    ``sft:`` section of the recipe overrides lr / epochs / steps / batch / LoRA for this stage. ``options`` as for
    :func:`dpo` (the run folder defaults to ``runs/sft``)."""
    return _tune_one("sft", base, data, cfg, options or TuneOptions())


def _tune_one(
    method: str, base: str | None, data: Any, cfg: TuneConfig | str | None, opts: TuneOptions
) -> TuneResult:
    job = _job(method, base, data, _recipe(cfg), opts.run_dir(method), opts)
    prepare_out_dir(job.out, opts.resume, opts.overwrite)
    return _train(job)


def sft_dpo(
    base: str | None, data: Any, cfg: TuneConfig | str | None = None, options: TuneOptions | None = None
) -> TuneResult:
    """SFT (on ``options.sft_data``, default: the pairs' chosen answers), then DPO that continues the SFT adapter
    with a frozen copy of it as the reference. ``out_dir/sft`` holds the SFT stage; ``out_dir/adapter`` the
    result (``out_dir`` defaults to ``runs/sft_dpo``), and ``out_dir/summary.json`` (method ``sft_dpo``) names
    both."""
    cfg, opts = _recipe(cfg), options or TuneOptions()
    out, resume = opts.run_dir("sft_dpo"), opts.resume
    # both data sets are checked before any compute
    dpo_job = _job("dpo", base, data, cfg, out, opts)
    sft_opts = TuneOptions(stance=opts.stance, resume=resume, split=opts.split)
    sft_data = opts.sft_data if opts.sft_data is not None else data
    sft_job = _job("sft", base, sft_data, cfg, out / "sft", sft_opts)
    prepare_out_dir(out, resume, opts.overwrite)
    if (sft_job.out / "summary.json").is_file() and resume:
        log.info("SFT stage already done in %s", sft_job.out)
        sft_adapter = sft_job.out / "adapter"
    else:
        prepare_out_dir(sft_job.out, resume, False)
        sft_adapter = _train(sft_job).adapter_dir
    dpo_job.init_adapter, dpo_job.label = sft_adapter, "sft_dpo"
    dpo_job.extra = {"sft": {"dir": str(sft_job.out), "adapter": str(sft_adapter)}}
    prepare_out_dir(out, resume, False, keep=("sft",))
    return _train(dpo_job)


def merge(
    base: str, adapter: str | os.PathLike[str], out_dir: str | os.PathLike[str], dtype: str = "float32"
) -> Path:
    """Merge a LoRA adapter into its base and save a full safetensors model (+ tokenizer) at ``out_dir``.

    ``dtype``: of the merged weights; fp32 by default, so the merge is exact whatever dtype computation uses."""
    from politune.models.loading import load_model

    model, tok = load_model(base, adapter=Path(adapter), device="cpu", dtype=dtype)
    merged = model.merge_and_unload()
    dest = Path(out_dir)
    with atomic_dir(dest) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return dest
