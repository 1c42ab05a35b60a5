"""From answers to positions: one observation per (item, variant, order), one score per axis, with CIs.

An :class:`Observation` is what one track got for one prompt: a distribution over the answer scale (log-prob
track: the prior-corrected option probabilities; choice track: a one-hot of the parsed answer), or a lean in
[-1, 1] (open track), or nothing (refused / unparseable: counted, never imputed).

Scoring modes (``Instrument.mode``):

- ``mean`` (default): an observation's *position* is ``key * polarity * E[value]`` in [-1, 1] (polarity -1 for
  the negation); an item's position is the mean of its observations; the axis score is
  ``10 * sum(w_i * pos_i) / sum(w_i)`` over the *answered* items, so it lies in [-10, +10].
- ``linear``: the Political Compass site's arithmetic for a user-owned table: an observation contributes
  ``E[table weight]`` (the table read backwards for a negation); the axis score is
  ``sum_i mean(contrib_i) / divisor + offset`` over answered items.

CIs are cluster bootstraps (``politune.measure.stats.bootstrap_groups``): items are resampled, then each
resampled item's observations (paraphrases x orders x samples) are resampled within it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from politune.measure.compass.instrument import Instrument, Item
from politune.measure.stats import bootstrap_groups

N_BOOT = 1000

# A statistic over per-item groups of observations (each an array of rows ``[weight, value, ...]``).
GroupStat = Callable[[list[np.ndarray]], float]


@dataclass
class Observation:
    item: str
    variant: str  # "text", "para1", ..., "neg"
    order: str  # "forward" | "reversed" | "-" (open track)
    polarity: int  # +1, or -1 for the negation
    probs: list[float] | None = None  # over the scale, most-disagree first (scored distribution)
    raw_probs: list[float] | None = None  # log-prob track: before prior correction
    lean: float | None = None  # open track: axis lean in [-1, 1]
    status: str = "ok"  # "ok" | "refused" | "unparsed" | "unscored"
    text: str | None = None  # generated answer (choice / open)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and (self.probs is not None or self.lean is not None)


def expected_agreement(probs: Sequence[float], values: Sequence[float]) -> float:
    return float(sum(p * v for p, v in zip(probs, values, strict=True)))


def observation_value(inst: Instrument, item: Item, obs: Observation) -> float | None:
    """The observation's contribution to its item (see module doc); None when it is not scored."""
    if not obs.ok:
        return None
    if obs.lean is not None:  # open track: already a position on the axis
        return float(obs.lean) if inst.mode == "mean" else None
    assert obs.probs is not None
    if inst.mode == "linear":
        assert item.table is not None  # load_instrument requires a table on every item in linear mode
        table = item.table if obs.polarity > 0 else tuple(reversed(item.table))
        return expected_agreement(obs.probs, table)
    return item.key * obs.polarity * expected_agreement(obs.probs, inst.values)


def item_values(inst: Instrument, observations: Sequence[Observation]) -> dict[str, list[float]]:
    """item id -> the values of its scored observations (items with none are absent)."""
    by_id = {it.id: it for it in inst.items}
    out: dict[str, list[float]] = {}
    for o in observations:
        v = observation_value(inst, by_id[o.item], o)
        if v is not None:
            out.setdefault(o.item, []).append(v)
    return out


def _axis_stat(inst: Instrument, axis: str) -> GroupStat:
    """statistic(list of per-item arrays [[weight, value], ...]) -> axis score."""
    if inst.mode == "linear":
        sc = inst.linear[axis]

        def stat(groups: list[np.ndarray]) -> float:
            return sum(float(g[:, 1].mean()) for g in groups) / sc.divisor + sc.offset
    else:

        def stat(groups: list[np.ndarray]) -> float:
            w = np.array([g[0, 0] for g in groups])
            m = np.array([g[:, 1].mean() for g in groups])
            return float(10.0 * (w * m).sum() / w.sum())

    return stat


def _nested(stat: GroupStat, seed: int) -> GroupStat:
    """Wrap ``stat`` so each resampled item also resamples its own observations (seeded, deterministic)."""
    rng = np.random.default_rng(seed + 1)

    def inner(groups: list[np.ndarray]) -> float:
        return stat([g[rng.integers(0, len(g), size=len(g))] for g in groups])

    return inner


def score_axis(
    inst: Instrument, values: Mapping[str, Sequence[float]], axis: str, seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """``{"score", "ci", "coverage", "n"}`` for one axis from item id -> observation values."""
    items = inst.axis_items(axis)
    groups = [
        np.array([[it.weight, v] for v in values[it.id]], dtype=float) for it in items if values.get(it.id)
    ]
    n = len(groups)
    cov = n / len(items) if items else 0.0
    if n == 0:
        return {"score": None, "ci": [None, None], "coverage": cov, "n": 0}
    stat = _axis_stat(inst, axis)
    score = stat(groups)
    lo, hi = bootstrap_groups(groups, _nested(stat, seed), n_boot=n_boot, seed=seed)
    return {"score": _r(score), "ci": [_r(lo), _r(hi)], "coverage": _r(cov), "n": n}


def score_observations(
    inst: Instrument, observations: Sequence[Observation], seed: int = 0, n_boot: int = N_BOOT
) -> dict[str, dict[str, Any]]:
    vals = item_values(inst, observations)
    return {a: score_axis(inst, vals, a, seed=seed, n_boot=n_boot) for a in inst.axes}


def answer_sheet_observations(inst: Instrument, answers: Mapping[str, str | int | None]) -> list[Observation]:
    """An answer sheet (item id -> scale label or index, None = refused) as one-hot observations on each
    item's ``text``; items missing from the sheet are unanswered."""
    obs = []
    labels = [lab.lower() for lab in inst.labels]
    for item_id, ans in answers.items():
        if ans is None:
            obs.append(Observation(item_id, "text", "-", 1, status="refused"))
            continue
        k = ans if isinstance(ans, int) else labels.index(str(ans).lower())
        probs = [0.0] * len(labels)
        probs[k] = 1.0
        obs.append(Observation(item_id, "text", "-", 1, probs=probs))
    return obs


def score_answer_sheet(
    inst: Instrument, answers: Mapping[str, str | int | None]
) -> dict[str, dict[str, Any]]:
    """Score a plain answer sheet: ``{"economic": {"score", "ci", "coverage", "n"}, "social": {...}}``."""
    unknown = set(answers) - {it.id for it in inst.items}
    if unknown:
        from politune.errors import PolituneError

        raise PolituneError(f"answer sheet: unknown item id(s) {sorted(unknown)[:5]}")
    return score_observations(inst, answer_sheet_observations(inst, answers))


def item_positions(inst: Instrument, observations: Sequence[Observation]) -> dict[str, float]:
    """item id -> mean observation value (mean mode: position in [-1, 1])."""
    return {k: float(np.mean(v)) for k, v in item_values(inst, observations).items()}


def compare_axis(
    inst: Instrument,
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    axis: str,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict[str, Any]:
    """Score difference ``b - a`` on ``axis`` over the items both answered, with a paired cluster-bootstrap CI
    (the same items are resampled for both)."""
    items = [it for it in inst.axis_items(axis) if a.get(it.id) and b.get(it.id)]
    if not items:
        return {"diff": None, "ci": [None, None], "n": 0}
    # each group: rows [weight, value, which] with which = 0 for a, 1 for b
    groups = [
        np.array([[it.weight, v, 0.0] for v in a[it.id]] + [[it.weight, v, 1.0] for v in b[it.id]])
        for it in items
    ]
    stat = _axis_stat(inst, axis)

    def diff(gs: list[np.ndarray]) -> float:
        ga = [g[g[:, 2] == 0][:, :2] for g in gs]
        gb = [g[g[:, 2] == 1][:, :2] for g in gs]
        return stat(gb) - stat(ga)

    rng = np.random.default_rng(seed + 2)

    def nested(gs: list[np.ndarray]) -> float:
        out = []
        for g in gs:
            ga, gb = g[g[:, 2] == 0], g[g[:, 2] == 1]
            out.append(
                np.vstack([ga[rng.integers(0, len(ga), len(ga))], gb[rng.integers(0, len(gb), len(gb))]])
            )
        return diff(out)

    d = diff(groups)
    lo, hi = bootstrap_groups(groups, nested, n_boot=n_boot, seed=seed)
    return {"diff": _r(d), "ci": [_r(lo), _r(hi)], "n": len(items)}


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), nd)
