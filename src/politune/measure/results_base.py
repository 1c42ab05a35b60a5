"""The shared pieces of the typed result files (``politune.measure.results``): the base model every result
and entry derives from, :class:`CI`, :class:`TargetInfo`, :class:`MeanCI`, :class:`DiffCI` and the
``kind``-carrying result base. Kept apart so that result models can live in more than one module while
``politune.measure.results`` stays the one reader and writer of result files."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

Axis = Literal["economic", "social"]
Count = Annotated[int | None, Field(ge=0)]  # how many items (never negative); None: not recorded


class _Model(BaseModel):
    """Extra keys are ignored when reading (other writers, newer versions); declared ones are typed."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    def to_json(self) -> dict[str, Any]:
        """The JSON object as written: only the keys that were given (a missing optional key stays missing)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x


class CI(_Model):
    """A 95% bootstrap confidence interval; ``[lo, hi]`` in JSON (``[null, null]`` when unknown)."""

    lo: float | None = None
    hi: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            if len(v) != 2:
                raise ValueError(f"expected [lo, hi], got {len(v)} value(s)")
            return {"lo": _finite(v[0]), "hi": _finite(v[1])}
        if v is None:
            return {}
        return v

    @model_serializer
    def _to_pair(self) -> list[float | None]:
        return [self.lo, self.hi]

    @property
    def ok(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def bounds(self) -> tuple[float, float] | None:
        """``(lo, hi)``, or None when either bound is unknown."""
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)

    @property
    def excludes_zero(self) -> bool:
        return self.bounds is not None and (self.bounds[0] > 0 or self.bounds[1] < 0)

    def fmt(self, digits: int = 2) -> str:
        return f"[{self.lo:.{digits}f}, {self.hi:.{digits}f}]" if self.ok else ""


def ci(pair: tuple[float, float] | list[float | None] | None) -> CI:
    """``(lo, hi)`` from :mod:`politune.measure.stats` (NaN for no data) -> :class:`CI`."""
    return CI.model_validate(list(pair) if pair is not None else None)


class TargetInfo(_Model):
    """What was measured (``politune.measure.targets.Target`` plus the adapter's hash)."""

    name: str
    model: str | None = None
    adapter: str | None = None
    adapter_hash: str | None = None
    system: str | None = None

    @classmethod
    def of(cls, target: Any) -> TargetInfo:
        return cls.model_validate(target.to_dict())

    @property
    def role(self) -> str:
        return "adapter" if self.adapter else "persona" if self.system else "base"


class MeanCI(_Model):
    mean: float | None = None
    ci: CI = CI()
    n: Count = None


class DiffCI(_Model):
    diff: float | None = None
    ci: CI = CI()
    n: Count = None


class _Result(_Model):
    kind: str
    provenance: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    generation_seconds: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **super().to_json()}  # the kind is always written
