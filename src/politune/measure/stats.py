"""Bootstrap confidence intervals: one implementation for every measure.

Convention everywhere in politune: a CI is a 95% percentile bootstrap ``[lo, hi]``, seeded, so the same data
gives the same interval. Resampling units are chosen by the caller (items, paraphrases, orders, samples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def bootstrap_ci(
    values: Iterable[float | None],
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over ``values`` (Nones and NaNs dropped). Returns (nan, nan) if empty."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = np.apply_along_axis(stat, 1, x[idx]) if stat is not np.mean else x[idx].mean(axis=1)
    return (float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2)))


def bootstrap_groups(
    groups: Sequence[ArrayLike],
    statistic: Callable[[list[np.ndarray]], float],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Cluster bootstrap: resample whole groups (e.g. items, each with its paraphrases x orders), then apply
    ``statistic`` to the resampled list of groups."""
    arrs = [np.asarray(g, dtype=float) for g in groups]
    if not arrs:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(arrs), size=len(arrs))
        out[b] = statistic([arrs[i] for i in pick])
    out = out[~np.isnan(out)]
    if out.size == 0:
        return (float("nan"), float("nan"))
    return (float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2)))


def paired_diff_ci(
    a: Sequence[float | None],
    b: Sequence[float | None],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Mean of ``b - a`` over paired observations (same items) and its bootstrap CI."""
    pairs = [
        (x, y)
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and not (np.isnan(x) or np.isnan(y))
    ]
    d = np.asarray([y - x for x, y in pairs], dtype=float)
    if d.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    return float(d.mean()), bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)


def sign_test_p(k: int, n: int) -> float:
    """Exact two-sided binomial test of ``k`` successes in ``n`` trials against a fair coin (p = 0.5): the
    probability of a split at least as uneven. 1.0 for ``n == 0``. Exact where a bootstrap CI of a share from a
    few binary values is too narrow (e.g. 2 of 10 gives a percentile CI of [0.0, 0.4], but p = 0.11)."""
    if n <= 0:
        return 1.0
    from math import comb

    tail = sum(comb(n, i) for i in range(min(k, n - k) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def cluster_mean_ci(
    values: Sequence[float | None], clusters: Sequence[str], seed: int = 0, alpha: float = 0.05
) -> tuple[float | None, tuple[float, float], int]:
    """Mean of the known ``values`` and its CI from a cluster bootstrap that resamples whole ``clusters`` (all
    values of a topic or an issue move together); also the number of known values. ``None`` values are dropped;
    the mean is ``None`` when none is known."""
    groups: dict[str, list[float]] = {}
    for v, c in zip(values, clusters, strict=True):
        if v is not None and not np.isnan(v):
            groups.setdefault(c, []).append(float(v))
    known = [v for g in groups.values() for v in g]
    if not known:
        return None, (float("nan"), float("nan")), 0
    lo_hi = bootstrap_groups(
        list(groups.values()), lambda gs: float(np.mean(np.concatenate(gs))), alpha=alpha, seed=seed
    )
    return float(np.mean(known)), lo_hi, len(known)
