"""tune pillar: SFT, DPO and SFT->DPO with LoRA over TRL + PEFT.

    from politune.tune import TuneOptions, dpo, load_recipe
    cfg = load_recipe("cpu-smollm2", overrides=["beta=0.2"])
    res = dpo("smollm2-135m", pairs, cfg, TuneOptions(out_dir="runs/left", stance="left"))

Heavy libraries (torch, TRL) are imported when a function runs, not on ``import politune.tune``.
"""

from politune.tune.config import LoraSettings, SFTStage, TuneConfig, list_recipes, load_recipe
from politune.tune.run import TuneOptions, TuneResult, dpo, merge, sft, sft_dpo

__all__ = [
    "LoraSettings",
    "SFTStage",
    "TuneConfig",
    "TuneOptions",
    "TuneResult",
    "dpo",
    "list_recipes",
    "load_recipe",
    "merge",
    "sft",
    "sft_dpo",
]
