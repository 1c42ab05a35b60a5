"""Diagnostics that say how much to trust a track's score.

- ``acquiescence``: share of agreement over all answered statements. Every item is asked together with its
  negation and keys are balanced per axis, so a model with no habit of agreeing scores 0.5; above 0.5 it
  agrees with whatever it is told.
- ``flip_consistency``: share of items whose negation lands on the same side of the axis as the item itself
  (agreeing with a claim and disagreeing with its opposite are consistent).
- ``order_sensitivity``: mean |agreement(forward order) - agreement(reversed order)| / 2 over statements, in
  [0, 1]: 0 = the option order does not matter.
- ``content_sensitivity`` (log-prob track): the share of the option distributions' spread (their squared
  distance from uniform, summed over prompts) that varies with the statement, as opposed to the part every
  prompt shares (the option prior): ``sum_j |p_j - mean_o|^2 / sum_j |p_j - uniform|^2`` within each order.
  Near 0 means the track is blind for this model: it gives the same distribution whatever it reads.
- ``refusal_rate`` and ``coverage`` (share of items with at least one scored answer).
- ``agreement`` (between tracks): share of items, among those both tracks place off-centre, whose positions
  have the same sign.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from politune.measure.compass.instrument import Instrument
from politune.measure.compass.scoring import Observation, expected_agreement, item_positions


def _agree_share(probs: Sequence[float], values: Sequence[float]) -> float:
    return float(
        sum(p for p, v in zip(probs, values, strict=True) if v > 0)
        + 0.5 * sum(p for p, v in zip(probs, values, strict=True) if v == 0)
    )


def content_sensitivity(obs: Sequence[Observation]) -> float | None:
    by_order: dict[str, list[np.ndarray]] = defaultdict(list)
    for o in obs:
        if o.raw_probs is not None:
            by_order[o.order].append(np.asarray(o.raw_probs, dtype=float))
    num = den = 0.0
    for rows in by_order.values():
        p = np.stack(rows)
        u = np.full(p.shape[1], 1.0 / p.shape[1])
        num += float(((p - p.mean(axis=0)) ** 2).sum())
        den += float(((p - u) ** 2).sum())
    return round(num / den, 4) if den > 0 else None


def track_diagnostics(inst: Instrument, obs: Sequence[Observation]) -> dict[str, Any]:
    values = inst.values
    by_id = {it.id: it for it in inst.items}
    ok = [o for o in obs if o.ok]
    with_probs = [(o, o.probs) for o in ok if o.probs is not None]
    acq = float(np.mean([_agree_share(probs, values) for _, probs in with_probs])) if with_probs else None

    # flip consistency on positions (key * polarity * agreement, or the open track's lean)
    aff: dict[str, list[float]] = defaultdict(list)
    neg: dict[str, list[float]] = defaultdict(list)
    for o in ok:
        if o.lean is not None:
            pos = o.lean
        else:
            assert o.probs is not None  # an ok observation has a lean or probabilities
            pos = by_id[o.item].key * o.polarity * expected_agreement(o.probs, values)
        (neg if o.polarity < 0 else aff)[o.item].append(pos)
    pairs = [(np.mean(aff[i]), np.mean(neg[i])) for i in aff if i in neg]
    flip = float(np.mean([np.sign(a) == np.sign(b) and a != 0 for a, b in pairs])) if pairs else None

    # order sensitivity over statements seen in both orders
    by_stmt: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for o, probs in with_probs:
        by_stmt[(o.item, o.variant)][o.order] = expected_agreement(probs, values)
    diffs = [
        abs(d["forward"] - d["reversed"]) / 2 for d in by_stmt.values() if {"forward", "reversed"} <= set(d)
    ]
    order = float(np.mean(diffs)) if diffs else None

    refused = sum(o.status == "refused" for o in obs)
    answered = {o.item for o in ok}
    return {
        "acquiescence": _r(acq),
        "flip_consistency": _r(flip),
        "order_sensitivity": _r(order),
        "refusal_rate": _r(refused / len(obs)) if obs else None,
        "coverage": _r(len(answered) / len(inst.items)),
        "counts": {s: sum(o.status == s for o in obs) for s in ("ok", "refused", "unparsed", "unscored")},
    }


def agreement(
    inst: Instrument, runs: dict[str, Sequence[Observation]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pairwise sign agreement of item positions between tracks, and per-item rows with a ``disagree`` flag."""
    pos = {name: item_positions(inst, o) for name, o in runs.items()} if inst.mode == "mean" else {}
    names = list(pos)
    rates = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            # items both tracks place off-centre (a position of exactly 0 takes no side)
            common = [k for k in pos[a] if k in pos[b] and pos[a][k] != 0 and pos[b][k] != 0]
            rates[f"{a}~{b}"] = (
                _r(float(np.mean([np.sign(pos[a][k]) == np.sign(pos[b][k]) for k in common])))
                if common
                else None
            )
    items = []
    for it in inst.items:
        scores = {n: _r(pos[n].get(it.id)) for n in names}
        signs = {np.sign(v) for v in scores.values() if v is not None and v != 0}
        items.append({"id": it.id, "axis": it.axis, "scores": scores, "disagree": len(signs) > 1})
    return rates, items


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), nd)
