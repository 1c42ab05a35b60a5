"""``TuneConfig``: one config for SFT, DPO and SFT->DPO, loaded from a recipe YAML with ``KEY=VALUE`` overrides.

Every key has its default here, next to its meaning. The config is mapped onto TRL's ``DPOConfig`` /
``SFTConfig`` by :func:`dpo_args` / :func:`sft_args`; dtype, device and gradient checkpointing are decided by the
hardware (:mod:`politune.hardware`), never by TRL's defaults (bf16 + checkpointing; bf16 speed on a CPU varies
by machine, from far slower to several times faster than fp32, so it is measured at start-up).
Extra TRL options go under ``trl:`` and are checked against the installed TRL before any compute.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from pydantic import Field

from politune.config import Config, load_config
from politune.errors import PolituneError, did_you_mean

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from peft import LoraConfig
    from transformers import TrainingArguments
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.sft_config import SFTConfig

TrainingArgs = TypeVar("TrainingArgs", bound="TrainingArguments")

# The preference losses (defined in politune.tune.losses); this is the one list of their names.
LossName = Literal["sigmoid", "ipo", "hinge", "robust", "simpo"]
LOSSES: tuple[str, ...] = get_args(LossName)

# Our loss names -> TRL 1.x ``loss_type`` (``simpo`` = TRL's length-normalised ``sigmoid_norm``). TRL never
# computes the loss (PolituneDPOTrainer does, from a LossSpec); TRL gets the matching settings for its own checks.
TRL_LOSS = {"sigmoid": "sigmoid", "ipo": "ipo", "hinge": "hinge", "robust": "robust", "simpo": "sigmoid_norm"}


@dataclass(frozen=True)
class LossSpec:
    """The preference loss of a run, as the trainer computes it: built from a recipe by
    :meth:`TuneConfig.loss_spec`, the one place the loss is configured."""

    name: LossName = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0  # robust loss: probability a label is flipped
    sft_weight: float = 0.0  # weight of an added NLL term on the chosen answers (RPO); 0 = off


class LoraSettings(Config):
    """LoRA adapter shape (PEFT ``LoraConfig``)."""

    r: int = Field(8, ge=1, description="rank")
    alpha: float = Field(16, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout on the LoRA input (0 keeps runs deterministic)"
    )
    targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], description="module names to adapt, or ['all-linear']"
    )
    layers: list[int] | None = Field(
        None,
        description="only these decoder layers (None = all); adapting only the "
        "top layers makes the backward pass stop early",
    )
    dora: bool = Field(False, description="DoRA (off by default: vLLM does not load it)")


class SFTStage(Config):
    """Settings of the SFT stage of ``sft_dpo`` (and of ``sft``); ``None`` falls back to the top-level value."""

    lr: float | None = Field(None, gt=0, description="learning rate of the SFT stage")
    epochs: float | None = Field(None, gt=0, description="epochs of the SFT stage")
    max_steps: int | None = Field(None, description="optimizer steps of the SFT stage (-1: by epochs)")
    batch_size: int | None = Field(None, ge=1, description="per-device batch size of the SFT stage")
    grad_accum: int | None = Field(None, ge=1, description="gradient accumulation steps of the SFT stage")
    lora: LoraSettings | None = Field(None, description="the SFT adapter's shape")


class TuneConfig(Config):
    """A tuning recipe. Keys and defaults (the CPU-friendly defaults; recipes override them)."""

    name: str = Field("custom", description="recipe name, recorded in outputs")
    base: str = Field("smollm2-135m", description="registry name, local directory or hub id")
    method: Literal["dpo", "sft", "sft_dpo"] = "dpo"
    system: str | None = Field(None, description="system prompt added to every training example")
    # --- preference loss -------------------------------------------------------------------------------
    loss: LossName = Field(
        "sigmoid", description="sigmoid (DPO) | ipo | hinge | robust | simpo (length-normalised)"
    )
    beta: float = Field(0.1, gt=0, description="DPO beta (IPO: tau)")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="robust loss: probability a label is flipped"
    )
    sft_weight: float = Field(0.0, ge=0, description="weight of an added NLL term on chosen (RPO); 0 = off")

    def loss_spec(self) -> LossSpec:
        return LossSpec(self.loss, self.beta, self.label_smoothing, self.sft_weight)

    # --- optimisation ----------------------------------------------------------------------------------
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: str = Field("cosine", description="transformers scheduler name: cosine, linear, constant, ...")
    warmup_steps: int = Field(0, ge=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    batch_size: int = Field(8, ge=1, description="preference pairs per device per micro-step")
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    max_length: int = Field(
        256, ge=8, description="tokens of prompt + completion; longer completions are cut"
    )
    seed: int = 0
    lora: LoraSettings = Field(default_factory=LoraSettings)
    sft: SFTStage = Field(default_factory=SFTStage)
    # --- hardware --------------------------------------------------------------------------------------
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    dtype: str = Field(
        "auto",
        description="auto: bf16 on Ampere+ GPUs; on a CPU bf16 only where a native bf16 path is found and "
        "measured faster at start-up (politune.hardware), else fp32. bf16 on a CPU trains as autocast over fp32 "
        "weights",
    )
    gradient_checkpointing: bool | None = Field(None, description="None = on for GPUs, off on CPU")
    share_frozen_layers: bool = Field(
        True,
        description="run the frozen layers below the lowest adapted layer once "
        "for policy and reference, and each prompt once for its chosen and rejected answer "
        "(exact; a speed-up when lora.layers is set)",
    )
    quantization: Literal["none", "4bit"] = Field(
        "none", description="4bit = QLoRA via bitsandbytes (GPU only)"
    )
    # --- bookkeeping -----------------------------------------------------------------------------------
    logging_steps: int = Field(1, ge=1)
    save_every: int = Field(0, ge=0, description="checkpoint every N optimizer steps (0 = only at the end)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    eval_every: int = Field(
        0, ge=0, description="run evaluate(model, tokenizer) every N steps (0 = start/end)"
    )
    report_to: list[str] = Field(
        default_factory=list, description="tensorboard, wandb, mlflow (metrics.jsonl is always written)"
    )
    step0_check: bool = Field(True, description="stop if step-0 loss/log-probs show a wrong reference")
    trl: dict[str, Any] = Field(
        default_factory=dict, description="extra DPOConfig/SFTConfig keys, passed through"
    )


# --------------------------------------------------------------------------------------------------------
# recipes


def recipes_dir() -> Path:
    return Path(str(resources.files("politune.tune") / "recipes"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """A shipped recipe name (``cpu-smollm2``) or a path to a YAML file."""
    p = Path(recipe)
    if p.suffix in {".yaml", ".yml"} or p.is_file():
        if not p.is_file():
            raise PolituneError(f"{p}: recipe file not found")
        return p
    name = str(recipe)
    shipped = recipes_dir() / f"{name}.yaml"
    if not shipped.is_file():
        raise PolituneError(
            f"unknown recipe {name!r}: expected one of {', '.join(list_recipes())} "
            f"or a path to a YAML file{did_you_mean(name, list_recipes())}"
        )
    return shipped


def load_recipe(
    recipe: str | os.PathLike[str] = "cpu-smollm2", overrides: list[str] | None = None
) -> TuneConfig:
    """Load a shipped recipe or a YAML file, apply ``KEY=VALUE`` overrides, validate (incl. ``trl:`` keys)."""
    cfg = load_config(TuneConfig, recipe_path(recipe), overrides)
    check_trl_keys(cfg)
    return cfg


# --------------------------------------------------------------------------------------------------------
# mapping onto TRL

# The TRL range politune's trainer is written and tested against (it subclasses DPOTrainer, whose internals were
# rewritten in TRL 0.29: ``max_prompt_length`` and friends vanished). Kept equal to pyproject's pin.
TRL_MIN, TRL_BELOW = "1.16", "2"


def check_trl_version() -> str:
    import trl
    from packaging.version import Version

    v = Version(trl.__version__)
    if not (Version(TRL_MIN) <= v < Version(TRL_BELOW)):
        raise PolituneError(
            f"TRL {trl.__version__} is installed; politune.tune needs trl>={TRL_MIN},<{TRL_BELOW} "
            f"(pip install 'trl>={TRL_MIN},<{TRL_BELOW}')"
        )
    return trl.__version__


# Keys we set ourselves from TuneConfig; a ``trl:`` entry may not set them (one obvious place per concept).
_MANAGED = {
    "output_dir",
    "learning_rate",
    "beta",
    "loss_type",
    "loss_weights",
    "label_smoothing",
    "max_length",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "seed",
    "data_seed",
    "bf16",
    "fp16",
    "use_cpu",
    "gradient_checkpointing",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "report_to",
    "max_grad_norm",
    "save_total_limit",
}


def _field_names(cls: type[DataclassInstance]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_trl_keys(cfg: TuneConfig) -> None:
    """A ``trl:`` key the installed TRL does not have (renamed/removed) is an error before any compute."""
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.sft_config import SFTConfig

    check_trl_version()
    valid = _field_names(SFTConfig if cfg.method == "sft" else DPOConfig)
    if cfg.method == "sft_dpo":
        valid &= _field_names(SFTConfig) | _field_names(DPOConfig)
    for key in cfg.trl:
        if key in _MANAGED:
            raise PolituneError(
                f"trl.{key}: set by politune from the recipe; use the politune key instead (see docs/tune.md)"
            )
        if key not in valid:
            import trl

            hint = did_you_mean(key, sorted(valid))
            raise PolituneError(
                f"trl.{key}: not an option of the installed TRL {trl.__version__} "
                f"({'SFTConfig' if cfg.method == 'sft' else 'DPOConfig'}){hint}"
            )


def hardware_settings(cfg: TuneConfig) -> dict[str, Any]:
    """Device, dtype and checkpointing from the hardware, never TRL's defaults.

    ``dtype`` is the compute dtype; ``load_dtype`` the weights'. On a CPU, bf16 means autocast over fp32 weights
    (fp32 master weights: measured 1.27x faster per DPO step than fp32 here, idle; bf16 weights trained no faster);
    on a GPU the weights are loaded in the compute dtype, as TRL and PEFT expect.
    """
    import torch

    from politune.hardware import dtype_choice, pick_device, pick_dtype

    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    load_dtype = torch.float32 if device == "cpu" else dtype
    if cfg.quantization == "4bit" and not device.startswith("cuda"):
        raise PolituneError(
            "quantization=4bit (QLoRA) needs a CUDA GPU with bitsandbytes; on this machine use "
            "quantization=none"
        )
    gc = cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else device.startswith("cuda")
    return {
        "device": device,
        "dtype": dtype,
        "load_dtype": load_dtype,
        "dtype_choice": dtype_choice(cfg.dtype, device),
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": device == "cpu",
        "gradient_checkpointing": gc,
    }


def _common_args(
    cfg: TuneConfig,
    out_dir: Path,
    hw: dict[str, Any],
    *,
    lr: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    grad_accum: int,
) -> dict[str, Any]:
    return {
        "output_dir": str(out_dir),
        "learning_rate": lr,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "lr_scheduler_type": cfg.scheduler,
        "warmup_steps": cfg.warmup_steps,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": hw["bf16"],
        "fp16": hw["fp16"],
        "use_cpu": hw["use_cpu"],
        "gradient_checkpointing": hw["gradient_checkpointing"],
        "logging_steps": cfg.logging_steps,
        "report_to": list(cfg.report_to) or "none",
        "save_strategy": "steps" if cfg.save_every else "no",
        "save_steps": cfg.save_every or 500,
        "save_total_limit": cfg.save_total_limit,
        "max_length": cfg.max_length,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "per_device_eval_batch_size": batch_size,
        "prediction_loss_only": True,
    }


def _trl_config(cls: type[TrainingArgs], label: str, cfg: TuneConfig, kw: dict[str, Any]) -> TrainingArgs:
    """``cls(**kw)`` plus the recipe's ``trl:`` entries that ``cls`` knows; TRL's refusal as a PolituneError."""
    extra = {k: v for k, v in cfg.trl.items() if k in _field_names(cls)}
    try:
        return cls(**kw, **extra)
    except (ValueError, TypeError) as e:
        raise PolituneError(
            f"recipe {cfg.name}: TRL rejected the {label} settings: {str(e).splitlines()[0]}"
        ) from None


def dpo_args(cfg: TuneConfig, out_dir: Path, hw: dict[str, Any]) -> DPOConfig:
    from trl.trainer.dpo_config import DPOConfig

    spec = cfg.loss_spec()
    loss_type = [TRL_LOSS[spec.name]]
    weights = [1.0]
    if spec.sft_weight > 0:
        loss_type.append("sft")
        weights.append(spec.sft_weight)
    kw = _common_args(
        cfg,
        out_dir,
        hw,
        lr=cfg.lr,
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
    )
    kw.update(beta=spec.beta, loss_type=loss_type, loss_weights=weights, label_smoothing=spec.label_smoothing)
    return _trl_config(DPOConfig, "DPO", cfg, kw)


def sft_args(cfg: TuneConfig, out_dir: Path, hw: dict[str, Any]) -> SFTConfig:
    from trl.trainer.sft_config import SFTConfig

    s = cfg.sft
    kw = _common_args(
        cfg,
        out_dir,
        hw,
        lr=s.lr or cfg.lr,
        epochs=s.epochs or cfg.epochs,
        max_steps=s.max_steps if s.max_steps is not None else cfg.max_steps,
        batch_size=s.batch_size or cfg.batch_size,
        grad_accum=s.grad_accum or cfg.grad_accum,
    )
    kw.update(completion_only_loss=True, packing=False)
    return _trl_config(SFTConfig, "SFT", cfg, kw)


def lora_config(lora: LoraSettings) -> LoraConfig:
    from peft import LoraConfig

    targets: Any = lora.targets
    if targets == ["all-linear"]:
        targets = "all-linear"
    if "lm_head" in lora.targets:
        raise PolituneError(
            "lora.targets: 'lm_head' is not supported (no modules_to_save, vLLM-loadable "
            "adapters); use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"
        )
    return LoraConfig(
        r=lora.r,
        # the ignore: PEFT annotates lora_alpha as int, but only divides by it (scale = alpha / r)
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=targets,
        layers_to_transform=lora.layers,
        use_dora=lora.dora,
        bias="none",
        task_type="CAUSAL_LM",
    )
