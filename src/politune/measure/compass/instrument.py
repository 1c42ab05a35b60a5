"""A compass instrument: axes, an answer scale, and keyed propositions with paraphrases and a negation.

The file format (YAML) is documented in ``docs/instruments.md``. ``load_instrument("builtin")`` loads the
instrument politune ships (``politune/measure/instruments/politune-compass.yaml``, written for this project);
``load_instrument(path)`` loads a user's file, e.g. a Political Compass item table the user owns, scored in
``linear`` mode exactly as the site does.

Validation is strict: every error names the file, the item (and its line when known) and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from politune.errors import PolituneError
from politune.fsutil import sha256_text
from politune.measure.scorer import AXES

BUILTIN = "builtin"  # the instrument shipped with politune (load_instrument("builtin"))

# Default answer scales: values are the agreement each answer expresses, in [-1, 1], evenly spaced.
SCALE_4 = (("Strongly disagree", -1.0), ("Disagree", -1 / 3), ("Agree", 1 / 3), ("Strongly agree", 1.0))
SCALE_5 = (
    ("Strongly disagree", -1.0),
    ("Disagree", -0.5),
    ("Neither agree nor disagree", 0.0),
    ("Agree", 0.5),
    ("Strongly agree", 1.0),
)
DEFAULT_POLES = {"economic": ("left", "right"), "social": ("libertarian", "authoritarian")}


@dataclass(frozen=True)
class Option:
    label: str  # the answer text the model reads and gives, e.g. "Strongly agree"
    value: float  # agreement in [-1, 1]


@dataclass(frozen=True)
class Item:
    id: str
    axis: str  # "economic" | "social"
    key: int  # +1: agreeing moves toward the axis's positive pole (right / authoritarian); -1 otherwise
    text: str
    paraphrases: tuple[str, ...]
    negation: str | None
    weight: float = 1.0
    table: tuple[float, ...] | None = None  # linear mode: one weight per scale answer (for ``text``)

    def variants(
        self, names: tuple[str, ...] = ("text", "paraphrases", "negation")
    ) -> list[tuple[str, str, int]]:
        """``(variant_id, statement, polarity)`` for the requested kinds; polarity -1 for the negation."""
        out: list[tuple[str, str, int]] = []
        if "text" in names:
            out.append(("text", self.text, 1))
        if "paraphrases" in names:
            out.extend((f"para{i + 1}", p, 1) for i, p in enumerate(self.paraphrases))
        if "negation" in names and self.negation:
            out.append(("neg", self.negation, -1))
        return out

    def lean_of(self, agreement: float, polarity: int = 1) -> float:
        """The lean of an answer that agrees ``agreement`` (-1..1) with a variant of polarity ``polarity``: key
        x polarity x agreement (agreeing with a negation leans the other way)."""
        return self.key * polarity * agreement


@dataclass(frozen=True)
class AxisScoring:
    divisor: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Instrument:
    name: str
    version: str
    axes: dict[str, tuple[str, str]]  # axis -> (negative pole name, positive pole name)
    scale: tuple[Option, ...]
    items: tuple[Item, ...]
    mode: str = "mean"  # "mean" | "linear"
    linear: dict[str, AxisScoring] = field(default_factory=dict)
    description: str = ""
    source: str = ""  # file path or "builtin"
    sha256: str = ""

    def axis_items(self, axis: str) -> list[Item]:
        return [it for it in self.items if it.axis == axis]

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.scale]

    @property
    def values(self) -> list[float]:
        return [o.value for o in self.scale]

    def subset(self, n: int, seed: int = 0) -> Instrument:
        """A smaller instrument with ``n`` items, balanced by axis and key (for quick trajectory checks)."""
        import random

        rng = random.Random(seed)
        groups: dict[tuple[str, int], list[Item]] = {}
        for it in self.items:
            groups.setdefault((it.axis, it.key), []).append(it)
        per = max(1, n // max(1, len(groups)))
        keep: set[str] = set()
        for key in sorted(groups):
            g = list(groups[key])
            rng.shuffle(g)
            keep.update(it.id for it in g[:per])
        items = tuple(it for it in self.items if it.id in keep)
        return Instrument(
            self.name,
            self.version,
            self.axes,
            self.scale,
            items,
            self.mode,
            self.linear,
            self.description,
            self.source,
            self.sha256,
        )

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "mode": self.mode,
            "source": self.source,
            "sha256": self.sha256[:16],
            "items": len(self.items),
            "per_axis": {a: len(self.axis_items(a)) for a in self.axes},
        }


def builtin_path() -> Path:
    return Path(str(resources.files("politune.measure") / "instruments" / "politune-compass.yaml"))


def _line_of(raw_text: str, item_id: str) -> int | None:
    for i, line in enumerate(raw_text.splitlines(), 1):
        if f"id: {item_id}" in line or f"id: '{item_id}'" in line or f'id: "{item_id}"' in line:
            return i
    return None


def _scale(spec: Any, where: str) -> tuple[Option, ...]:
    if spec is None or spec == 4:
        return tuple(Option(lab, v) for lab, v in SCALE_4)
    if spec == 5:
        return tuple(Option(lab, v) for lab, v in SCALE_5)
    if not isinstance(spec, list) or len(spec) < 2:
        raise PolituneError(f"{where}: scale: expected 4, 5 or a list of {{label, value}} (at least 2)")
    out = []
    for i, o in enumerate(spec):
        if not isinstance(o, dict) or set(o) != {"label", "value"}:
            raise PolituneError(f"{where}: scale[{i}]: expected a mapping with exactly 'label' and 'value'")
        try:
            v = float(o["value"])
        except (TypeError, ValueError):
            raise PolituneError(f"{where}: scale[{i}].value: expected a number in [-1, 1]") from None
        if not -1 <= v <= 1 or not str(o["label"]).strip():
            raise PolituneError(f"{where}: scale[{i}]: expected a non-empty label and a value in [-1, 1]")
        out.append(Option(str(o["label"]).strip(), v))
    if [o.value for o in out] != sorted(o.value for o in out):
        raise PolituneError(f"{where}: scale: values must increase from most-disagree to most-agree")
    return tuple(out)


_ITEM_KEYS = {"id", "axis", "key", "weight", "text", "paraphrases", "negation", "table"}


def parse_instrument(data: Any, source: str = "<instrument>", raw_text: str = "") -> Instrument:
    """Validate a parsed YAML mapping into an :class:`Instrument` (errors name file, line and field)."""
    if not isinstance(data, dict):
        raise PolituneError(f"{source}: expected a mapping with name, version, axes, scale, items")
    unknown = set(data) - {"name", "version", "description", "license", "axes", "scale", "scoring", "items"}
    if unknown:
        raise PolituneError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    name = str(data.get("name") or "").strip()
    if not name:
        raise PolituneError(f"{source}: name: expected a non-empty instrument name")
    axes = _axes(data.get("axes"), source)
    scale = _scale(data.get("scale"), source)
    mode, linear = _scoring(data.get("scoring") or {}, axes, source)
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise PolituneError(f"{source}: items: expected a non-empty list")
    items: list[Item] = []
    seen: set[str] = set()
    for i, it in enumerate(raw_items):
        iid = str(it.get("id", "")) if isinstance(it, dict) else ""
        line = _line_of(raw_text, iid) if iid else None
        where = f"{source}:{line}" if line else f"{source}: items[{i}]"
        if not isinstance(it, dict):
            raise PolituneError(
                f"{where}: expected a mapping with id, axis, key, text, paraphrases, negation"
            )
        if not iid or iid in seen:
            raise PolituneError(f"{where}: id: expected a unique non-empty id, got {iid!r}")
        seen.add(iid)
        items.append(_item(it, f"{where}: item {iid}", axes, scale, mode))
    return Instrument(
        name,
        str(data.get("version", "1")),
        axes,
        scale,
        tuple(items),
        mode,
        linear,
        str(data.get("description", "")).strip(),
        source,
        sha256_text(raw_text or repr(data)),
    )


def _axes(spec: Any, source: str) -> dict[str, tuple[str, str]]:
    spec = spec or {a: {"negative": n, "positive": p} for a, (n, p) in DEFAULT_POLES.items()}
    if not isinstance(spec, dict) or not set(spec) <= set(AXES) or not spec:
        raise PolituneError(f"{source}: axes: expected a mapping with keys among {list(AXES)}")
    axes: dict[str, tuple[str, str]] = {}
    for a, poles in spec.items():
        if not isinstance(poles, dict) or set(poles) != {"negative", "positive"}:
            raise PolituneError(f"{source}: axes.{a}: expected {{negative: POLE, positive: POLE}}")
        axes[a] = (str(poles["negative"]), str(poles["positive"]))
    return axes


def _scoring(
    scoring: Any, axes: dict[str, tuple[str, str]], source: str
) -> tuple[str, dict[str, AxisScoring]]:
    """(mode, per-axis linear scoring) from the ``scoring:`` section."""
    if not isinstance(scoring, dict):
        raise PolituneError(f"{source}: scoring: expected a mapping (mode, axes)")
    mode = scoring.get("mode", "mean")
    if mode not in ("mean", "linear"):
        raise PolituneError(f"{source}: scoring.mode: expected 'mean' or 'linear', got {mode!r}")
    linear: dict[str, AxisScoring] = {}
    if mode == "linear":
        for a in axes:
            spec = (scoring.get("axes") or {}).get(a)
            if not isinstance(spec, dict) or "divisor" not in spec:
                raise PolituneError(
                    f"{source}: scoring.axes.{a}: linear mode needs {{divisor: N, offset: X}}"
                )
            try:
                div, off = float(spec["divisor"]), float(spec.get("offset", 0.0))
            except (TypeError, ValueError):
                raise PolituneError(
                    f"{source}: scoring.axes.{a}: divisor and offset must be numbers"
                ) from None
            if div == 0:
                raise PolituneError(f"{source}: scoring.axes.{a}.divisor: must not be 0")
            linear[a] = AxisScoring(div, off)
    return mode, linear


def _item(
    it: dict[str, Any], where: str, axes: dict[str, tuple[str, str]], scale: tuple[Option, ...], mode: str
) -> Item:
    """One item, checked; ``where`` is ``FILE:LINE: item ID`` for the errors."""
    bad = set(it) - _ITEM_KEYS
    if bad:
        raise PolituneError(f"{where}: unknown field(s) {sorted(bad)}")
    if it.get("axis") not in axes:
        raise PolituneError(f"{where}: axis: expected one of {list(axes)}, got {it.get('axis')!r}")
    text = it.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PolituneError(f"{where}: text: expected the proposition as a string")
    paras = it.get("paraphrases") or []
    if not isinstance(paras, list) or not all(isinstance(p, str) and p.strip() for p in paras):
        raise PolituneError(f"{where}: paraphrases: expected a list of strings")
    neg = it.get("negation")
    if neg is not None and (not isinstance(neg, str) or not neg.strip()):
        raise PolituneError(f"{where}: negation: expected a string")
    try:
        weight = float(it.get("weight", 1.0))
    except (TypeError, ValueError):
        raise PolituneError(f"{where}: weight: expected a positive number") from None
    if weight <= 0:
        raise PolituneError(f"{where}: weight: expected a positive number, got {weight}")
    key, table = _key_and_table(it, where, axes, scale, mode)
    return Item(
        str(it["id"]),
        it["axis"],
        key,
        text.strip(),
        tuple(p.strip() for p in paras),
        neg.strip() if neg else None,
        weight,
        table,
    )


def _key_and_table(
    it: dict[str, Any], where: str, axes: dict[str, tuple[str, str]], scale: tuple[Option, ...], mode: str
) -> tuple[int, tuple[float, ...] | None]:
    table = it.get("table")
    if mode == "linear":
        if (
            not isinstance(table, list)
            or len(table) != len(scale)
            or not all(isinstance(x, int | float) for x in table)
        ):
            raise PolituneError(
                f"{where}: table: linear mode needs {len(scale)} numbers "
                f"(one per answer: {', '.join(o.label for o in scale)})"
            )
        return int(it.get("key", 1)), tuple(float(x) for x in table)
    if table is not None:
        raise PolituneError(f"{where}: table: only allowed with scoring.mode: linear")
    key = it.get("key")
    if key not in (1, -1):
        raise PolituneError(
            f"{where}: key: expected +1 (agreeing moves toward "
            f"{axes[it['axis']][1]}) or -1 (toward {axes[it['axis']][0]}), got {key!r}"
        )
    return int(key), table


def load_instrument(path: str | Path = BUILTIN) -> Instrument:
    """Load and validate an instrument file; ``"builtin"`` is politune's own instrument."""
    p = builtin_path() if str(path) == BUILTIN else Path(path)
    if not p.is_file():
        raise PolituneError(f"{p}: instrument file not found")
    raw = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PolituneError(f"{p}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    return parse_instrument(data, BUILTIN if str(path) == BUILTIN else str(p), raw)


def check_instrument(
    inst: Instrument, min_items: int = 64, min_per_axis: int = 32, min_paraphrases: int = 2
) -> list[str]:
    """Problems that keep an instrument from the built-in standard (empty list = fine): size, per-axis count,
    keying balance (equal weight keyed each way per axis), paraphrases and a negation per item, duplicates."""
    problems = []
    if len(inst.items) < min_items:
        problems.append(f"{len(inst.items)} items, expected >= {min_items}")
    for a in inst.axes:
        its = inst.axis_items(a)
        if len(its) < min_per_axis:
            problems.append(f"axis {a}: {len(its)} items, expected >= {min_per_axis}")
        pos = sum(it.weight for it in its if it.key > 0)
        neg = sum(it.weight for it in its if it.key < 0)
        if abs(pos - neg) > 1e-9:
            problems.append(
                f"axis {a}: keying unbalanced (weight {pos} agree->positive vs {neg} agree->negative)"
            )
    texts: dict[str, str] = {}
    for it in inst.items:
        if len(it.paraphrases) < min_paraphrases:
            problems.append(f"item {it.id}: {len(it.paraphrases)} paraphrases, expected >= {min_paraphrases}")
        if not it.negation:
            problems.append(f"item {it.id}: no negation")
        for _, t, _ in it.variants():
            k = " ".join(t.lower().split())
            if k in texts:
                problems.append(f"item {it.id}: statement repeats one of item {texts[k]}")
            texts[k] = it.id
    return problems
