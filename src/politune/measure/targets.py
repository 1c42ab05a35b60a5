"""What gets measured: a base model, optionally with a LoRA adapter and/or a system prompt (a persona).

Every measure takes a list of :class:`Target` and uses :func:`iter_loaded` so the base model is loaded once and
adapters are attached and detached in turn (no second copy of the model in memory).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.fsutil import safe_name, sha256_dir

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer


@dataclass(frozen=True)
class Target:
    name: str  # display name in tables and charts: "base", "left", "socialist", ...
    model: str  # model reference (registry name, local dir, hub id)
    adapter: str | None = None  # LoRA adapter directory
    system: str | None = None  # system prompt (persona)

    @property
    def adapter_hash(self) -> str | None:
        return sha256_dir(self.adapter, "*.safetensors")[:16] if self.adapter else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "adapter_hash": self.adapter_hash}


def parse_named(values: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["left=runs/left/adapter", ...]`` -> ``{"left": "runs/left/adapter"}`` with names checked."""
    out: dict[str, str] = {}
    for v in values or []:
        if "=" not in v:
            raise PolituneError(f"--{what} {v!r}: expected NAME=VALUE")
        name, value = v.split("=", 1)
        safe_name(name, f"{what} name")
        if name in out or name == "base":
            raise PolituneError(f"--{what} {v!r}: name {name!r} is used twice (or is the reserved 'base')")
        out[name] = value
    return out


def build_targets(
    model: str,
    adapters: Sequence[str] | None = None,
    personas: Sequence[str] | None = None,
    system: str | None = None,
    include_base: bool = True,
) -> list[Target]:
    """CLI form -> targets: ``base`` (with ``system`` if given), one per ``NAME=ADAPTER_DIR`` and one per
    ``NAME=SYSTEM PROMPT`` persona."""
    targets = [Target("base", model, None, system)] if include_base else []
    for name, adir in parse_named(adapters, "adapter").items():
        if not Path(adir).is_dir():
            raise PolituneError(f"--adapter {name}={adir}: directory not found")
        targets.append(Target(name, model, adir, system))
    for name, prompt in parse_named(personas, "persona").items():
        targets.append(Target(name, model, None, prompt))
    if len({t.name for t in targets}) != len(targets):
        raise PolituneError("target names must be unique")
    return targets


def target_stance(target: Target, stances: dict[str, str] | None = None) -> str | None:
    """The stance given for a target in ``stances``, else the one its adapter's model card records (None: not
    known, e.g. the base or an adapter trained elsewhere)."""
    if stances and target.name in stances:
        return stances[target.name]
    if target.adapter:
        from politune.tune.card import read_adapter_facts

        return read_adapter_facts(target.adapter).stance
    return None


def iter_loaded(
    targets: Sequence[Target], device: str = "auto", dtype: str = "auto"
) -> Iterator[tuple[Target, CausalLM, Tokenizer]]:
    """Yield ``(target, model, tokenizer)`` for each target, loading each distinct base model once and
    attaching / detaching adapters with PEFT in turn."""
    from politune.models.loading import load_adapter, load_model

    by_model: dict[str, list[Target]] = {}
    for t in targets:
        by_model.setdefault(t.model, []).append(t)
    for model_ref, group in by_model.items():
        base, tok = load_model(model_ref, device=device, dtype=dtype)
        for t in group:
            if t.adapter is None:
                yield t, base, tok
                continue
            peft_model = load_adapter(base, t.adapter, name=safe_name(t.name, "adapter name"))
            peft_model.eval()
            try:
                yield t, peft_model, tok
            finally:
                base = peft_model.unload()  # removes the LoRA layers, restores the untouched base
        del base
