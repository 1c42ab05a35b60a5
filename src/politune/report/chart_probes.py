"""The probe charts: even-handedness (side A - side B per signal, with 95% CIs, per model) and the safety probes
(compliance on harmful and benign asks, and each target's change in harmful compliance against the base)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from politune.measure.results import DiffCI, EvenhandEntry, MeanCI, SafetyEntry
from politune.measure.results_probes import SideAsymmetry
from politune.report.charts import model_colours, model_rows_figure, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike


def _point(
    ax: Axes, x: float | None, lo: float | None, hi: float | None, y: float, colour: str, **kw: Any
) -> None:
    if x is None:
        ax.scatter([0], [y], marker="x", color=colour, s=22)
        return
    err = [[x - lo], [hi - x]] if lo is not None and hi is not None else None
    ax.errorbar(x, y, xerr=err, fmt=kw.pop("fmt", "o"), color=colour, capsize=3, markersize=6, lw=1.3, **kw)


def label_share_panels(
    panels: tuple[Axes, Axes], rows: tuple[ArrayLike, Sequence[str]], xlabels: tuple[str, str]
) -> None:
    """The two panels of a share chart, one row per label at its y: shares in [0, 1] on the left (with the
    legend), differences in [-1, 1] around 0 on the right."""
    ax, axd = panels
    ys, labels = rows
    for a in panels:
        a.set_yticks(ys)
        a.set_yticklabels(labels, fontsize=9)
        a.grid(True, axis="x", alpha=0.3)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel(xlabels[0])
    ax.legend(fontsize=8, loc="lower right")
    axd.axvline(0, color="#555555", lw=0.8)
    axd.set_xlim(-1.05, 1.05)
    axd.set_xlabel(xlabels[1])


def _rows(entries: Mapping[str, EvenhandEntry]) -> list[tuple[str, dict[str, SideAsymmetry | DiffCI]]]:
    """The signals drawn, in order: label -> each model's asymmetry."""
    labels: dict[str, dict[str, SideAsymmetry | DiffCI]] = {}
    for name, e in entries.items():
        labels.setdefault("engagement (offline)", {})[name] = e.engagement
        labels.setdefault("refusal rate", {})[name] = e.refusal
        for g in e.refusal_by_group:
            labels.setdefault(f"refusal: {g.group_a} - {g.group_b}", {})[name] = g
        if e.judge is not None:
            labels.setdefault("judge preference", {})[name] = e.judge.asymmetry
    return list(labels.items())


def _value(d: SideAsymmetry | DiffCI) -> tuple[float | None, float | None, float | None]:
    return d.diff, d.ci.lo, d.ci.hi


def plot_evenhand(entries: Mapping[str, EvenhandEntry], colours: Mapping[str, str] | None = None) -> Figure:
    """Side A - side B of each signal (+: side A favoured; A = economic-left / social-liberal in the built-in
    set) per model with its 95% CI (topics resampled); the hedging difference (1-5 scale) in its own panel.
    A model flagged ``lopsided`` is starred in the legend."""
    import numpy as np

    names = list(entries)
    colours = {**model_colours(names), **(colours or {})}
    rows = _rows(entries)
    fig = new_figure((10.5, max(3.2, 0.55 * len(rows) * max(1, len(names)) ** 0.5 + 1.8)))
    ax, axh = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3.0, 1.2]})
    ys = np.arange(len(rows))[::-1].astype(float)
    step = 0.7 / max(1, len(names))
    for j, name in enumerate(names):
        off = 0.35 - step * (j + 0.5)
        star = " (lopsided)" if entries[name].lopsided else ""
        for i, (_, by_model) in enumerate(rows):
            if name in by_model:
                _point(
                    ax,
                    *_value(by_model[name]),
                    ys[i] + off,
                    colours[name],
                    label=name + star if i == 0 else None,
                )
        _point(axh, *_value(entries[name].hedging), off, colours[name])
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, _ in rows], fontsize=9)
    ax.axvline(0, color="#555555", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("side A - side B  (+ favours side A)")
    ax.grid(True, axis="x", alpha=0.3)
    axh.axvline(0, color="#555555", lw=0.8)
    axh.set_yticks([0.0])
    axh.set_yticklabels(["hedging (1-5)"], fontsize=9)
    axh.set_ylim(-0.6, 0.6)
    axh.set_xlabel("side A - side B")
    axh.grid(True, axis="x", alpha=0.3)
    if names:
        fig.legend(fontsize=9, loc="outside lower center", ncol=min(5, len(names)), frameon=False)
    fig.suptitle("Even-handedness: answers to opposing sides of the same request (95% CIs)")
    return fig


def _mean(m: MeanCI) -> tuple[float | None, float | None, float | None]:
    return m.mean, m.ci.lo, m.ci.hi


def plot_safety(entries: Mapping[str, SafetyEntry], colours: Mapping[str, str] | None = None) -> Figure:
    """Left: compliance (not refused) on harmful (filled) and matched benign (hollow) asks per model, with 95%
    CIs. Right: each non-base target's harmful compliance minus the base's, paired by probe."""
    names = list(entries)
    fig, (ax, axd), ys, colour = model_rows_figure(names, colours, 0.5)
    for y, name in zip(ys, names, strict=True):
        e = entries[name]
        _point(
            ax, *_mean(e.harmful_compliance), y + 0.12, colour[name], label="harmful" if y == ys[0] else None
        )
        _point(
            ax,
            *_mean(e.benign_compliance),
            y - 0.12,
            colour[name],
            fmt="o",
            mfc="white",
            label="benign" if y == ys[0] else None,
        )
        if e.harmful_vs_base is not None:
            d = e.harmful_vs_base
            _point(axd, d.diff, d.ci.lo, d.ci.hi, y, colour[name])
    xlabels = ("compliance (share not refused)", "harmful compliance - base's  (+ easier to misuse)")
    label_share_panels((ax, axd), (ys, names), xlabels)
    for a in (ax, axd):
        a.set_ylim(-0.7, len(names) - 0.3)
    fig.suptitle("Safety probes: harmful vs matched benign political asks (95% CIs)")
    return fig
