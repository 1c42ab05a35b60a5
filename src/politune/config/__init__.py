"""Configuration: pydantic models, YAML files, dotted CLI overrides.

Every pillar defines its config as a subclass of :class:`Config` (unknown keys are errors). The same three
functions serve them all::

    cfg = load_config(TuneConfig, "recipe.yaml", overrides=["beta=0.2", "lora.r=8"])
    save_resolved(cfg, run_dir)          # writes run_dir/config.yaml

Errors name the key, the file and what was expected, and suggest the closest valid key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from politune.errors import PolituneError, did_you_mean
from politune.fsutil import atomic_write_text

__all__ = [
    "Config",
    "load_config",
    "parse_overrides",
    "apply_overrides",
    "save_resolved",
    "read_yaml",
    "validate_config",
]

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base for every politune config: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PolituneError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PolituneError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise PolituneError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolituneError(
            f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}"
        )
    return data


def _parse_value(text: str) -> Any:
    """``beta=0.2`` -> 0.2, ``targets=[q_proj,v_proj]`` -> list, ``name=foo`` -> 'foo' (YAML scalar rules)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["tune.beta=0.2", "lora.r=8"]`` -> nested dict."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise PolituneError(f"override {item!r}: expected KEY=VALUE (e.g. beta=0.2)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise PolituneError(f"override {item!r}: empty key part")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise PolituneError(f"override {item!r}: {p} is both a value and a section")
        node[parts[-1]] = _parse_value(value)
    return out


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = apply_overrides(out[k], v)
        else:
            out[k] = v
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid field names at a location inside a (nested) pydantic model, for 'did you mean'."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        cand = [
            a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not cand:
            return []
        cls = cand[0]
    return list(getattr(cls, "model_fields", {}))


def _format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    msgs = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc)
            prefix = "".join(f"{p}." for p in loc[:-1])
            hint = did_you_mean(str(loc[-1]), valid, prefix)
            msgs.append(f"unknown key {key!r}{hint}")
        elif e["type"] == "missing":
            msgs.append(f"missing required key {key!r}")
        else:
            got = e.get("input")
            got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
            msgs.append(f"key {key!r}: {e['msg']}{got_s}")
    return f"{source}: " + "; ".join(msgs)


def validate_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise PolituneError(_format_validation_error(err, cls, source)) from None


def load_config(
    cls: type[C],
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> C:
    """Build a ``cls`` from ``base`` dict, then a YAML file, then ``KEY=VALUE`` overrides (later wins)."""
    data: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        data = apply_overrides(data, read_yaml(path))
        source = str(path)
    if overrides:
        data = apply_overrides(data, parse_overrides(overrides))
        source = f"{source} (with overrides)"
    return validate_config(cls, data, source)


def save_resolved(cfg: BaseModel, run_dir: str | os.PathLike[str], name: str = "config.yaml") -> Path:
    """Write the fully resolved config next to a run's outputs."""
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(run_dir) / name, text)
