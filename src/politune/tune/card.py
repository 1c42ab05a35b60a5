"""The model card (``adapter/README.md``) every tuned adapter carries: what it was trained from, on what, how,
its final training metrics, and how (not) to use it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from politune.tune.config import TuneConfig
from politune.tune.data import TrainingData

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
| method | {method_long}, loss `{loss}`, beta {cfg.beta}{sft_weight} |
| recipe | `{cfg.name}` (full resolved config in `config.yaml` next to this folder) |
| data | {data} |
| evaluation data | {eval_data} |
| LoRA | r {lora.r}, alpha {lora.alpha}, targets {targets}{layers} |
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


METHOD_LONG = {
    "dpo": "LoRA + DPO",
    "sft": "LoRA + SFT",
    "sft_dpo": "LoRA + SFT, then DPO from the SFT adapter",
}


@dataclass
class CardFacts:
    """What a finished run says about itself in its card."""

    cfg: TuneConfig
    base: str
    stance: str | None
    method: str  # "dpo" | "sft" | "sft_dpo"
    data: TrainingData
    eval_data: TrainingData | None
    trajectory: bool  # was the compass tracked during training


def _describe(data: TrainingData) -> str:
    return f"`{data.source}`, {data.n} examples, sha256 `{data.sha256}`"


def write_model_card(
    adapter_dir: Path, facts: CardFacts, final: dict[str, Any], steps: int, wall: float, device: str
) -> None:
    from politune import __version__
    from politune.models.registry import REGISTRY
    from politune.provenance import package_versions

    v = package_versions()
    cfg, base, stance, method, data, eval_data = (
        facts.cfg,
        facts.base,
        facts.stance,
        facts.method,
        facts.data,
        facts.eval_data,
    )
    entry = REGISTRY.get(base)
    lora = cfg.lora if method != "sft" else (cfg.sft.lora or cfg.lora)
    table = "\n".join(
        ["| metric | value |", "|---|---|"]
        + [f"| {k} | {round(val, 4) if isinstance(val, float) else val} |" for k, val in final.items()]
    )
    text = MODEL_CARD.format(
        base_hf=(entry.hf_id if entry and entry.hf_id else base),
        base=base,
        base_path=(entry.description if entry else "local or hub model"),
        stance=stance or "unspecified",
        stance_title=(stance or "unspecified stance"),
        method=method,
        method_long=METHOD_LONG[method],
        loss=cfg.loss if method != "sft" else "nll",
        sft_weight=f", SFT term weight {cfg.sft_weight}" if cfg.sft_weight else "",
        cfg=cfg,
        data=_describe(data),
        lora=lora,
        targets=", ".join(lora.targets),
        layers=f", layers {lora.layers}" if lora.layers else "",
        steps=steps,
        wall=wall,
        device=device,
        v_politune=__version__,
        v_trl=v["trl"],
        v_peft=v["peft"],
        metrics_table=table or "(no metrics logged)",
        trajectory_note="" if facts.trajectory else "; it was off for this run",
        eval_data=_describe(eval_data) if eval_data else "none (no held-out evaluation in this run)",
    )
    (adapter_dir / "README.md").write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class AdapterFacts:
    """What an adapter folder says about its training, for measures that need it (``None``: not recorded)."""

    stance: str | None = None
    beta: float | None = None
    method: str | None = None


_CARD_STANCE = re.compile(r"^\| target stance \| (.+?) \|\s*$", re.MULTILINE)
_CARD_METHOD = re.compile(r"^\| method \| (.+?), loss `[^`]*`, beta ([0-9.eE+-]+)", re.MULTILINE)


def read_adapter_facts(adapter_dir: str | Path) -> AdapterFacts:
    """The stance, DPO beta and method of a politune adapter: from the run folder's ``summary.json`` and
    ``config.yaml`` next to ``adapter_dir`` when they exist, else from the model card (``adapter_dir/README.md``).
    An adapter trained elsewhere gives empty facts."""
    import json

    import yaml

    d = Path(adapter_dir)
    stance: str | None = None
    beta: float | None = None
    method: str | None = None
    try:
        summary = json.loads((d.parent / "summary.json").read_text(encoding="utf-8"))
        if isinstance(summary, dict) and summary.get("kind") == "tune":
            stance, method = summary.get("stance"), summary.get("method")
        cfg = yaml.safe_load((d.parent / "config.yaml").read_text(encoding="utf-8"))
        if isinstance(cfg, dict) and isinstance(cfg.get("beta"), int | float):
            beta = float(cfg["beta"])
    except (OSError, ValueError, yaml.YAMLError):
        pass
    try:
        card = (d / "README.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        card = ""
    if stance is None and (m := _CARD_STANCE.search(card)):
        stance = m.group(1).strip()
    if (m := _CARD_METHOD.search(card)) is not None:
        method = method or {v: k for k, v in METHOD_LONG.items()}.get(m.group(1).strip())
        beta = beta if beta is not None else float(m.group(2))
    return AdapterFacts(None if stance in (None, "unspecified") else str(stance), beta, method)
