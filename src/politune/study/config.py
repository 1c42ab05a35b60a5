"""A study: data recipe + tune recipe + measures, optionally swept over any config key.

```yaml
name: demo
model: smollm2-135m
data: {split: train}                  # shared by every arm; an arm's own `data:` keys override it
arms:
  left:  {stance: left,  data: {source: builtin:left}}
  right: {stance: right, data: {source: builtin:right}}
tune: {method: dpo, recipe: cpu-smollm2, set: {max_steps: 40}}
measure: {compass: {tracks: [logprob, choice, open]}, topics: true, quality: true, toxicity: true,
          evenhand: {enabled: true, options: {topics: 8}}, safety: {enabled: true},
          issues: {enabled: true, options: {issues: 8}}, behaviour: {enabled: true, options: {topics: 8}},
          winrate: {enabled: true, options: {limit: 16}}, reward_accuracy: {enabled: true}}
sweep: {data.poison.p: [0, 0.1]}      # one run folder per cell (Cartesian product of the lists)
```
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import Field, model_validator

from politune.config import Config, apply_overrides, parse_overrides, read_yaml, validate_config
from politune.errors import PolituneError
from politune.measure.behaviour_axes import BehaviourOptions
from politune.measure.compass.run import CompassOptions
from politune.measure.effects import EffectsOptions
from politune.measure.evenhandedness import EvenhandOptions
from politune.measure.issue_stance import IssuesOptions
from politune.measure.reward_accuracy import RewardOptions
from politune.measure.safety_probes import SafetyOptions
from politune.measure.winrate import WinrateOptions

OptionsT = TypeVar("OptionsT", bound=Config)


class PoisonSpec(Config):
    """Malignama: ``labels`` trains on the worse answer with probability p; ``prompts`` plants a trigger."""

    mode: Literal["labels", "prompts"] = "labels"
    p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = 0
    trigger: str | None = None  # None = the data pillar's default trigger sentence


class MixSpec(Config):
    """Mix this arm's data with another source; ``ratio`` is the share of this arm's own data."""

    source: str
    ratio: float = Field(0.5, ge=0.0, le=1.0)


class ContextSpec(Config):
    """ComPreD: name the community in a header; ``randomize`` swaps in another community (the ablation)."""

    template: str | None = None
    randomize: bool = False


class DataRecipe(Config):
    source: str | None = None  # builtin:left, a local file, hf:org/name, ...
    split: Literal["train", "heldout", "all"] = "train"  # built-in sources: whole topics held out
    limit: int | None = None  # keep at most this many rows (seeded sample)
    mirror: bool = False  # swap chosen / rejected
    mix: MixSpec | None = None
    poison: PoisonSpec | None = None
    contextualize: ContextSpec | None = None
    seed: int = 0


class ArmSpec(Config):
    """One tuned adapter: its target stance (for the model card) and its data overrides."""

    stance: str
    data: dict[str, Any] = {}


class TuneSpec(Config):
    method: Literal["dpo", "sft", "sft_dpo"] = "dpo"
    recipe: str = "cpu-smollm2"  # shipped recipe name or YAML path
    set: dict[str, Any] = {}  # recipe overrides, dotted keys allowed: {max_steps: 40, lora.r: 8}


class CompassSpec(Config):
    enabled: bool = True
    tracks: list[Literal["logprob", "choice", "open"]] = ["logprob", "choice", "open"]
    options: CompassOptions = CompassOptions()  # items, variants, orders, decoding, templates, ... (typed)


class ProbeSpec(Config, Generic[OptionsT]):
    """A probe of the study (``measure.NAME``): off unless enabled, with the probe's typed options (its
    defaults where none are given)."""

    enabled: bool = False
    options: OptionsT

    @model_validator(mode="before")
    @classmethod
    def _default_options(cls, data: Any) -> Any:
        return {"options": {}} | data if isinstance(data, dict) else data


class MeasureSpec(Config):
    compass: CompassSpec = CompassSpec()
    topics: bool = True
    quality: bool = True
    toxicity: bool = True
    refusal: bool = True
    personas: dict[str, str] = {}  # extra targets: name -> system prompt
    options: EffectsOptions = EffectsOptions()  # side-effect measures: qa_limit, max_new_tokens, ... (typed)
    # the probes, off unless enabled, each writing NAME.json; the option named gives a cheap subset
    evenhand: ProbeSpec[EvenhandOptions] = ProbeSpec(options=EvenhandOptions())  # paired prompts: topics
    safety: ProbeSpec[SafetyOptions] = ProbeSpec(options=SafetyOptions())  # safety probes: per_category
    # ComPreD-style win-rate, each arm vs the base for the community of its stance: limit
    winrate: ProbeSpec[WinrateOptions] = ProbeSpec(options=WinrateOptions())
    # implicit reward accuracy of each arm's adapter on held-out pairs
    reward_accuracy: ProbeSpec[RewardOptions] = ProbeSpec(options=RewardOptions())
    issues: ProbeSpec[IssuesOptions] = ProbeSpec(options=IssuesOptions())  # stances on writing tasks: issues
    behaviour: ProbeSpec[BehaviourOptions] = ProbeSpec(
        options=BehaviourOptions()
    )  # charged questions: topics


class StudyConfig(Config):
    name: str
    description: str = ""
    model: str = "smollm2-135m"
    seed: int = 0
    data: DataRecipe = DataRecipe()
    arms: dict[str, ArmSpec]
    tune: TuneSpec = TuneSpec()
    measure: MeasureSpec = MeasureSpec()
    report: bool = True
    sweep: dict[str, list[Any]] = {}

    def arm_data(self, arm: str) -> DataRecipe:
        """The study-level data recipe with the arm's overrides applied."""
        merged = apply_overrides(self.data.model_dump(), self.arms[arm].data)
        return validate_config(DataRecipe, merged, f"arms.{arm}.data")


def _dotted_to_nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def cell_name(assignment: dict[str, Any]) -> str:
    """``{"data.poison.p": 0.1, "data.poison.mode": "labels"}`` -> ``p-0.1_mode-labels`` (a safe folder name)."""

    def show(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, dict):
            return "+".join(f"{k}={show(x)}" for k, x in v.items()) or "on"
        return str(v)

    parts = [f"{k.split('.')[-1]}-{show(v)}" for k, v in assignment.items()]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-.") or "cell"
    return name[:120]


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, parse_overrides(overrides))
    cfg = validate_config(StudyConfig, data, str(path))
    for arm in cfg.arms:  # arm overrides must make a valid data recipe
        cfg.arm_data(arm)
    return cfg


def expand_sweep(cfg: StudyConfig) -> list[tuple[str, dict[str, Any], StudyConfig]]:
    """One ``(cell name, assignment, config)`` per cell; a study without ``sweep`` is one cell named ``main``."""
    if not cfg.sweep:
        return [("main", {}, cfg)]
    keys = list(cfg.sweep)
    for k, values in cfg.sweep.items():
        if not isinstance(values, list) or not values:
            raise PolituneError(f"sweep.{k}: expected a non-empty list of values")
    base = cfg.model_dump(exclude={"sweep"})
    cells: list[tuple[str, dict[str, Any], StudyConfig]] = []
    names: set[str] = set()
    for combo in itertools.product(*(cfg.sweep[k] for k in keys)):
        assignment = dict(zip(keys, combo, strict=True))
        data = base
        for k, v in assignment.items():
            data = apply_overrides(data, _dotted_to_nested(k, v))
        cell_cfg = validate_config(StudyConfig, data, f"sweep cell {assignment}")
        for arm in cell_cfg.arms:
            cell_cfg.arm_data(arm)
        name = cell_name(assignment)
        if name in names:
            name = f"{name}-{len(cells)}"
        names.add(name)
        cells.append((name, assignment, cell_cfg))
    return cells
