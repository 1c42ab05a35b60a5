"""The charts of the issue-stance and behaviour-axes measures: the stance distribution per model (and per issue),
each model's lean toward the axes' poles; the five behaviour axes per model and their right - left slant gap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from politune.measure.results import IssuesEntry
from politune.measure.results_probes import BehaviourEntry
from politune.report.chart_probes import _point, label_share_panels
from politune.report.charts import model_colours, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# 1 only pro (dark teal) .. 3 neutral (grey) .. 5 only con (dark orange), refusal (light)
STANCE_COLOURS = {
    "1": "#1b7f79",
    "2": "#7fc4bd",
    "3": "#bdbdbd",
    "4": "#f0a868",
    "5": "#c25b12",
    "refusal": "#f2e6c9",
}


def _distribution(ax: Axes, entries: Mapping[str, IssuesEntry]) -> None:
    names = list(entries)
    for y, name in enumerate(reversed(names)):
        d = entries[name].distribution
        total = sum(d.get(k, 0) for k in STANCE_COLOURS) or 1
        left = 0.0
        for k, colour in STANCE_COLOURS.items():
            share = d.get(k, 0) / total
            ax.barh(y, share, left=left, color=colour, edgecolor="white", label=k if y == 0 else None)
            left += share
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(list(reversed(names)), fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers (1 only pro ... 5 only con)")
    ax.legend(fontsize=7, ncol=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)


def _per_issue(ax: Axes, entries: Mapping[str, IssuesEntry]) -> None:
    import numpy as np

    names = list(entries)
    issues = list(dict.fromkeys(i.issue for e in entries.values() for i in e.issues))
    grid = np.full((len(issues), len(names)), np.nan)
    for j, name in enumerate(names):
        for row in entries[name].issues:
            if row.mean_stance is not None:
                grid[issues.index(row.issue), j] = row.mean_stance
    im = ax.imshow(grid, cmap="BrBG_r", vmin=1, vmax=5, aspect="auto")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(issues)))
    ax.set_yticklabels(issues, fontsize=7)
    ax.figure.colorbar(im, ax=ax, shrink=0.6, label="mean stance (1 pro .. 5 con)")


def plot_issues(entries: Mapping[str, IssuesEntry], colours: Mapping[str, str] | None = None) -> Figure:
    """Left: each model's stance distribution; middle: its lean toward each axis' poles (-2 left / libertarian ..
    +2 right / authoritarian) with 95% CIs resampling issues; right: mean stance per issue and model."""
    names = list(entries)
    colours = {**model_colours(names), **(colours or {})}
    n_issues = max((len(e.issues) for e in entries.values()), default=1)
    fig = new_figure((13.0, max(3.2, 0.5 * len(names) + 1.8, 0.22 * n_issues + 1.2)))
    ax, axl, axh = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.5, 1.2, 1.3]})
    _distribution(ax, entries)
    axes = [a for a in ("economic", "social") if any(a in e.axis_lean for e in entries.values())]
    step = 0.6 / max(1, len(names))
    for j, name in enumerate(names):
        for i, a in enumerate(axes):
            m = entries[name].axis_lean.get(a)
            if m is not None:
                y = len(axes) - 1 - i + 0.3 - step * (j + 0.5)
                _point(axl, m.mean, m.ci.lo, m.ci.hi, y, colours[name], label=name if i == 0 else None)
    axl.set_yticks(range(len(axes)))
    axl.set_yticklabels(list(reversed(axes)), fontsize=9)
    axl.axvline(0, color="#555555", lw=0.8)
    axl.set_xlim(-2.1, 2.1)
    axl.set_xlabel("lean (- left / libertarian, + right / authoritarian)")
    axl.grid(True, axis="x", alpha=0.3)
    if names:
        fig.legend(
            *axl.get_legend_handles_labels(), fontsize=9, loc="outside lower center", ncol=min(6, len(names))
        )
    _per_issue(axh, entries)
    fig.suptitle("Issue stances on realistic writing requests (95% CIs)")
    return fig


def plot_behaviour(entries: Mapping[str, BehaviourEntry], colours: Mapping[str, str] | None = None) -> Figure:
    """Left: each model's mean per behaviour axis (0..1) with 95% CIs resampling topics; right: the gap between
    answers to right-leaning and left-leaning slants of the same question, per axis."""
    import numpy as np

    from politune.measure.behaviour_axes import AXES

    names = list(entries)
    colours = {**model_colours(names), **(colours or {})}
    fig = new_figure((11.0, max(3.2, 0.5 * len(AXES) * max(1, len(names)) ** 0.5 + 1.8)))
    ax, axd = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1.2]})
    ys = np.arange(len(AXES))[::-1].astype(float)
    step = 0.7 / max(1, len(names))
    for j, name in enumerate(names):
        e = entries[name]
        off = 0.35 - step * (j + 0.5)
        for i, a in enumerate(AXES):
            m, d = e.axes.get(a), e.right_minus_left.get(a)
            if m is not None:
                _point(
                    ax, m.mean, m.ci.lo, m.ci.hi, ys[i] + off, colours[name], label=name if i == 0 else None
                )
            if d is not None:
                _point(axd, d.diff, d.ci.lo, d.ci.hi, ys[i] + off, colours[name])
    xlabels = ("mean score (0 absent .. 1 strong)", "right-leaning - left-leaning slants")
    label_share_panels((ax, axd), (ys, [x.replace("_", " ") for x in AXES]), xlabels)
    fig.suptitle("Behaviour on charged questions (95% CIs)")
    return fig
