"""The ComPreD-style charts: pairwise win-rates (model A vs model B, per community, with 95% CIs and the judge's
first-slot share) and the implicit reward accuracy of DPO adapters on held-out pairs (overall and per axis)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from politune.measure.results import RewardAccuracyEntry, WinrateComparison
from politune.measure.results_base import MeanCI
from politune.report.chart_probes import _point
from politune.report.charts import model_colours, model_rows_figure, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _value(m: MeanCI) -> tuple[float | None, float | None, float | None]:
    return m.mean, m.ci.lo, m.ci.hi


def plot_winrate(
    comparisons: Sequence[WinrateComparison], colours: Mapping[str, str] | None = None
) -> Figure:
    """Left: model A's win-rate against model B per (comparison, community), 95% CI over prompts; 0.5 = the
    community is indifferent. Right: the judge's share of decisive verdicts for the first slot (0.5 = no
    position bias; hollow when the CI excludes 0.5)."""
    import numpy as np

    names = list(dict.fromkeys(c.a for c in comparisons))
    colours = {**model_colours(names), **(colours or {})}
    fig = new_figure((10.0, max(2.8, 0.5 * len(comparisons) + 1.8)))
    ax, axs = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.8, 1.0]})
    ys = np.arange(len(comparisons))[::-1].astype(float)
    labels = []
    for y, c in zip(ys, comparisons, strict=True):
        colour = colours.get(c.a, "#444444")
        _point(ax, *_value(c.win_rate), y, colour)
        _point(axs, *_value(c.first_slot), y, colour, mfc="white" if c.position_bias else colour)
        labels.append(f"{c.a} vs {c.b}\n{c.community}")
    for a in (ax, axs):
        a.set_yticks(ys)
        a.set_yticklabels(labels, fontsize=8)
        a.axvline(0.5, color="#555555", lw=0.8)
        a.set_xlim(-0.02, 1.02)
        a.set_ylim(-0.7, len(comparisons) - 0.3)
        a.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("win-rate of A (win 1, tie 0.5)")
    axs.set_xlabel("judge's first-slot share (0.5 = no bias)")
    fig.suptitle("Which answer would the community prefer? (order randomised, 95% CIs)")
    return fig


def plot_reward_accuracy(
    entries: Mapping[str, RewardAccuracyEntry], colours: Mapping[str, str] | None = None
) -> Figure:
    """Per adapter: the share of held-out pairs whose chosen answer gets the higher implicit reward (overall,
    filled; per axis, hollow), 95% CIs over pairs; 0.5 = chance. Right: the mean reward margin."""
    names = list(entries)
    fig, (ax, axm), ys, model_colour = model_rows_figure(names, colours, 0.6)
    for y, name in zip(ys, names, strict=True):
        e, colour = entries[name], model_colour[name]
        _point(ax, *_value(e.accuracy), y, colour)
        _point(axm, *_value(e.margin), y, colour)
        for k, (axis, g) in enumerate(sorted(e.by.get("axis", {}).items())):
            off = -0.18 * (k + 1)
            _point(ax, *_value(g.accuracy), y + off, colour, fmt="s", mfc="white")
            ax.annotate(axis, (1.0, y + off), fontsize=7, va="center", ha="right", color="#555555")
    for a in (ax, axm):
        a.set_yticks(ys)
        a.set_yticklabels(names, fontsize=9)
        a.grid(True, axis="x", alpha=0.3)
        a.set_ylim(-0.8, len(names) - 0.3)
    ax.axvline(0.5, color="#555555", lw=0.8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("reward accuracy (chosen > rejected; 0.5 = chance)")
    axm.axvline(0, color="#555555", lw=0.8)
    axm.set_xlabel("mean reward margin (chosen - rejected)")
    fig.suptitle("DPO implicit reward on held-out pairs, reference = base model (95% CIs)")
    return fig
