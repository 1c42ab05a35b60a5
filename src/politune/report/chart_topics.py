"""The topics chart: per-question lean by model as grouped bars, questions grouped by axis, with each model's
mean and 95% CI in a side panel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from politune.report.charts import as_topics, model_colours, new_figure
from politune.report.views import TopicsModel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_topics(
    topics: Any,
    title: str | None = "Per-question lean by model",
    colours: Mapping[str, str] | None = None,
    max_label: int = 28,
) -> Figure:
    """Per-question lean in [-1, 1] (− left/libertarian, + right/authoritarian) as grouped horizontal bars, one
    colour per model, questions grouped by axis; a side panel shows each model's mean with its 95% CI.
    Unscored answers (``null``) are marked with ×, never imputed.

    ``topics``: a topics.json path or dict, a list of them, or a list of :class:`TopicsModel`.
    """
    models = as_topics(topics)
    qids, meta = _questions(models)
    n_q, n_m = len(qids), max(1, len(models))
    height = min(24.0, max(3.6, 0.12 * n_q * n_m + 0.25 * n_q + 1.6))  # capped: many bars get thinner
    fig = new_figure((11.0, height))
    ax, axm = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3.2, 1.2]})
    colours = {
        **model_colours([m.name for m in models], {m.name: m.target.role for m in models}),
        **(colours or {}),
    }
    _bars(ax, models, (qids, meta), colours, max_label)
    ax.axvline(0, color="#555555", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Lean per question  (− left / libertarian   |   + right / authoritarian)")
    ax.set_ylabel("Question (topic)")
    ax.grid(True, axis="x", alpha=0.3)
    if n_q:
        ax.set_ylim(-0.6, n_q - 0.4)
    if models:
        _topics_legend(fig, ax, models)
    _means_panel(axm, models, colours)
    scorer = ", ".join(sorted({m.scorer for m in models}))
    if title:
        fig.suptitle(f"{title}" + (f"  (scorer: {scorer})" if scorer else ""))
    if not models:
        ax.text(0, 0, "no topic scores", ha="center", color="#aa0000")
    return fig


def _questions(models: list[TopicsModel]) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
    """Every question id (economic first, then social, then the rest; first-seen order within), and its
    (topic, axis)."""
    qids: list[str] = []
    meta: dict[str, tuple[str, str | None]] = {}
    for m in models:
        for q in m.questions:
            if q.id not in meta:
                qids.append(q.id)
                meta[q.id] = (q.topic, q.axis)
    axis_order = {"economic": 0, "social": 1}
    first = {q: i for i, q in enumerate(qids)}
    qids.sort(key=lambda q: (axis_order.get(meta[q][1] or "", 2), first[q]))
    return qids, meta


def _topics_legend(fig: Figure, ax: Axes, models: list[TopicsModel]) -> None:
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if any(q.score is None for m in models for q in m.questions):
        handles.append(Line2D([], [], marker="x", ls="", color="#555555"))
        labels.append("unscored")
    fig.legend(
        handles, labels, fontsize=9, loc="outside lower center", ncol=min(5, len(handles)), frameon=False
    )


def _means_panel(axm: Axes, models: list[TopicsModel], colours: Mapping[str, str]) -> None:
    """Each model's mean lean with its 95% CI."""
    import numpy as np

    ym = np.arange(len(models))[::-1]
    for y, m in zip(ym, models, strict=True):
        if m.mean.value is None:
            axm.text(0, y, "no score", ha="center", va="center", fontsize=8, color="#aa0000")
            continue
        err = m.mean.error_bar()
        axm.errorbar(
            m.mean.value, y, xerr=err, fmt="o", color=colours[m.name], capsize=4, markersize=7, lw=1.5
        )
    axm.set_yticks(ym)
    axm.set_yticklabels([m.name for m in models], fontsize=9)
    axm.axvline(0, color="#555555", lw=0.8)
    values = [m.mean.value for m in models if m.mean.value is not None]
    lo = min([-0.5, *values] + [m.mean.ci[0] for m in models if m.mean.ci])
    hi = max([0.5, *values] + [m.mean.ci[1] for m in models if m.mean.ci])
    axm.set_xlim(lo - 0.1, hi + 0.1)
    axm.set_ylim(-0.7, len(models) - 0.3)
    axm.set_xlabel("Mean lean (95% CI)")
    axm.set_title("Mean", fontsize=10)
    axm.grid(True, axis="x", alpha=0.3)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _question_label(topic: str, axis: str | None, max_label: int) -> str:
    """A bar's label: the topic, shortened, and its axis (``minimum wage  [econ]``)."""
    tag = {"economic": "econ", "social": "social"}
    return _short(topic, max_label) + (f"  [{tag.get(axis, axis)}]" if axis else "")


def _bars(
    ax: Axes,
    models: list[TopicsModel],
    questions: tuple[list[str], dict[str, tuple[str, str | None]]],
    colours: Mapping[str, str],
    max_label: int,
) -> None:
    """One bar per model and question (× where an answer could not be scored), labelled by topic and axis."""
    import numpy as np

    qids, meta = questions
    n_q, n_m = len(qids), max(1, len(models))
    bar_h = 0.8 / n_m
    ypos = np.arange(n_q)[::-1].astype(float)  # first question on top
    for j, m in enumerate(models):
        scores = {q.id: q.score for q in m.questions}
        offs = ypos + 0.4 - bar_h * (j + 0.5)
        vals = [scores.get(q) for q in qids]
        ax.barh(
            offs,
            [v if v is not None else 0.0 for v in vals],
            height=bar_h * 0.92,
            color=colours[m.name],
            label=m.name,
        )
        miss = [(o, q) for o, q, v in zip(offs, qids, vals, strict=True) if v is None and q in scores]
        if miss:
            ax.scatter(
                [0.0] * len(miss), [o for o, _ in miss], marker="x", color=colours[m.name], s=22, zorder=3
            )
    ax.set_yticks(ypos)
    ax.set_yticklabels(
        [_question_label(*meta[q], max_label) for q in qids],
        fontsize=9,
    )
