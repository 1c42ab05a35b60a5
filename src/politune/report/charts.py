"""The report's charts, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend).

Each ``plot_*`` function takes results (the views from :mod:`politune.report.collect`, a typed result from
:mod:`politune.measure.results`, a result dict as written to disk, or a path to the file), draws into ``ax`` when given or into a new
:class:`~matplotlib.figure.Figure`, and returns the figure. :func:`save_figure` writes it as PNG and SVG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.measure.results import CompassResult, TopicsResult, load_result
from politune.report.collect import (
    CompassModel,
    TopicsModel,
    TuneRun,
    parse_compass,
    parse_topics,
    read_trajectory,
    target_role,
)

TRACK_MARKERS = {"logprob": "o", "choice": "s", "open": "^"}
_EXTRA_MARKERS = ["D", "v", "P", "X", "*", "h"]
# Colour-blind-safe palette (Okabe-Ito), base model always grey-black.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#882255"]
BASE_COLOURS = ["#333333", "#8c8c8c", "#5e5e5e", "#b0b0b0"]
QUADRANTS = [  # (x sign, y sign, name, colour)
    (-1, 1, "Authoritarian left", "#f4a6a6"),
    (1, 1, "Authoritarian right", "#9ecae9"),
    (-1, -1, "Libertarian left", "#b5e3a8"),
    (1, -1, "Libertarian right", "#e3cff0"),
]


def _figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def model_colours(names: Sequence[str], roles: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stable colour per model: bases grey-black, others in palette order."""
    out, i, b = {}, 0, 0
    for n in names:
        if (roles or {}).get(n, "base" if n == "base" else "") == "base":  # several bases: shades of grey
            out[n] = BASE_COLOURS[b % len(BASE_COLOURS)]
            b += 1
        else:
            out[n] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def track_marker(track: str, tracks: Sequence[str]) -> str:
    if track in TRACK_MARKERS:
        return TRACK_MARKERS[track]
    extra = [t for t in tracks if t not in TRACK_MARKERS]
    return _EXTRA_MARKERS[extra.index(track) % len(_EXTRA_MARKERS)] if track in extra else "o"


def _load(obj: Any) -> Any:
    """A result file path -> its typed result (``politune.measure.results``); anything else unchanged."""
    if isinstance(obj, str | os.PathLike):
        return load_result(obj)
    return obj


def _as_compass(compass: Any) -> list[CompassModel]:
    compass = _load(compass)
    if isinstance(compass, dict | CompassResult):
        return parse_compass(compass)
    out: list[CompassModel] = []
    for c in compass or []:
        out.extend(_as_compass(c) if not isinstance(c, CompassModel) else [c])
    return out


def _as_topics(topics: Any) -> list[TopicsModel]:
    topics = _load(topics)
    if isinstance(topics, dict | TopicsResult):
        return parse_topics(topics)
    out: list[TopicsModel] = []
    for t in topics or []:
        out.extend(_as_topics(t) if not isinstance(t, TopicsModel) else [t])
    return out


# ---------------------------------------------------------------------------------------------------------


def plot_compass(compass: Any, ax=None, title: str | None = "Political compass", tracks: Sequence[str] | None = None,
                 limit: float = 10.0, colours: Mapping[str, str] | None = None):
    """Economic (x) by social (y) on [-limit, limit], quadrants shaded and named; each model a point per track
    with its 95% CI as error bars (colour = model, marker = track); arrows from the base model to every tuned
    adapter (solid) and persona (dotted), per track.

    ``compass``: a compass.json path or dict, a list of them, or a list of :class:`CompassModel`.
    """
    from matplotlib.lines import Line2D

    models = _as_compass(compass)
    fig = ax.figure if ax is not None else _figure((8.6, 7.0))
    ax = ax if ax is not None else fig.add_subplot()
    all_tracks = list(dict.fromkeys(t for m in models for t in m.tracks))
    tracks = [t for t in (tracks or all_tracks) if t in all_tracks]
    colours = {**model_colours([m.name for m in models], {m.name: m.role for m in models}), **(colours or {})}
    lim = limit
    for m in models:  # grow the frame if a writer used a wider scale
        for tr in m.tracks.values():
            for e in (tr.economic, tr.social):
                for v in ([e.value] if e.value is not None else []) + list(e.ci or ()):
                    lim = max(lim, abs(v) * 1.05)
    for sx, sy, name, colour in QUADRANTS:
        ax.fill_between([0, sx * lim], 0, sy * lim, color=colour, alpha=0.35, linewidth=0, zorder=0)
        ax.text(sx * lim * 0.97, sy * lim * 0.97, name, ha="right" if sx > 0 else "left",
                va="top" if sy > 0 else "bottom", fontsize=10, color="#444444", alpha=0.9, zorder=1,
                fontweight="bold")
    ax.axhline(0, color="#777777", lw=0.8, zorder=1)
    ax.axvline(0, color="#777777", lw=0.8, zorder=1)
    bases = [m for m in models if m.role == "base"]

    def base_of(m: CompassModel) -> CompassModel | None:
        """The base measured in the same result file, else one of the same base model, else the first."""
        for same in (lambda b: b.source is not None and b.source == m.source,
                     lambda b: b.target.get("model") == m.target.get("model"), lambda b: True):
            found = next((b for b in bases if same(b)), None)
            if found is not None:
                return found
        return None

    arrow_tracks = set()
    for m in models:  # arrows first, so the points sit on top; one arrow per model, on the shared track
        base = base_of(m)  # where it moved furthest (a blind track would draw a dot-sized arrow)
        if m.role == "base" or base is None:
            continue
        moves = []
        for t in tracks:
            a, b = base.tracks.get(t), m.tracks.get(t)
            if a and b and a.economic.ok and a.social.ok and b.economic.ok and b.social.ok:
                dist = (b.economic.value - a.economic.value) ** 2 + (b.social.value - a.social.value) ** 2
                moves.append((dist, -tracks.index(t), t, a, b))
        if not moves:
            continue
        _, _, t, a, b = max(moves)
        arrow_tracks.add(t)
        ax.annotate("", xy=(b.economic.value, b.social.value), xytext=(a.economic.value, a.social.value),
                    arrowprops={"arrowstyle": "-|>", "color": colours[m.name], "lw": 1.6, "alpha": 0.85,
                                "mutation_scale": 16, "shrinkA": 5, "shrinkB": 6,
                                "linestyle": "-" if m.role == "adapter" else (0, (2, 2))}, zorder=3.5)
    for m in models:
        for t in tracks:
            tr = m.tracks.get(t)
            if tr is None or not (tr.economic.ok and tr.social.ok):
                continue
            x, y = tr.economic.value, tr.social.value
            xerr = [[x - tr.economic.ci[0]], [tr.economic.ci[1] - x]] if tr.economic.ci else None
            yerr = [[y - tr.social.ci[0]], [tr.social.ci[1] - y]] if tr.social.ci else None
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=track_marker(t, all_tracks), color=colours[m.name],
                        ecolor=colours[m.name], elinewidth=1.0, capsize=2.5, markersize=8,
                        markeredgecolor="white", markeredgewidth=0.8, alpha=0.95, zorder=3)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("Economic  (← left   |   right →)")
    ax.set_ylabel("Social  (← libertarian   |   authoritarian →)")
    if title:
        ax.set_title(title)
    ax.grid(True, color="white", lw=0.6, alpha=0.8, zorder=0)
    model_handles = [Line2D([], [], color=colours[m.name], marker="o", ls="", markersize=8,
                            label=f"{m.name} ({m.role})") for m in models]
    track_handles = [Line2D([], [], color="#555555", marker=track_marker(t, all_tracks), ls="", markersize=8,
                            label=f"track: {t}") for t in tracks]
    on = f" ({', '.join(t for t in tracks if t in arrow_tracks)})" if len(tracks) > 1 and arrow_tracks else ""
    style_handles = [Line2D([], [], color="#555555", lw=1.3, label=f"base → adapter{on}"),
                     Line2D([], [], color="#555555", lw=1.3, ls=(0, (2, 2)), label=f"base → persona{on}")]
    if not any(m.role == "persona" for m in models):
        style_handles.pop()
    if not any(m.role == "adapter" for m in models):
        style_handles.pop(0)
    handles = model_handles + track_handles + style_handles + [
        Line2D([], [], color="#555555", marker="|", ls="", markersize=10, label="error bars: 95% CI")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False,
              borderaxespad=0, ncol=1 if len(handles) <= 18 else 2)
    if not models or not tracks:
        ax.text(0, 0, "no compass results", ha="center", va="center", fontsize=12, color="#aa0000")
    return fig


# ---------------------------------------------------------------------------------------------------------


def _as_runs(runs: Any) -> list[TuneRun]:
    if isinstance(runs, TuneRun):
        return [runs]
    if isinstance(runs, Mapping):  # {"name": rows or path}
        out = []
        for name, rows in runs.items():
            if isinstance(rows, str | os.PathLike):
                p = Path(rows)
                rows = read_trajectory(p / "trajectory.jsonl" if p.is_dir() else p)
            out.append(TuneRun(name=str(name), path=Path(str(name)), trajectory=list(rows)))
        return out
    out = []
    for r in runs or []:
        if isinstance(r, TuneRun):
            out.append(r)
        else:
            p = Path(r)
            f = p / "trajectory.jsonl" if p.is_dir() else p
            if not f.is_file():
                raise PolituneError(f"{f}: trajectory file not found")
            out.append(TuneRun(name=(p if p.is_dir() else p.parent).name, path=p, trajectory=read_trajectory(f)))
    return out


def run_colours(runs: Sequence[TuneRun]) -> dict[str, str]:
    """A stable colour per tuning run: the first left-stance run blue, the first right-stance run vermillion."""
    stance_colour = {"left": PALETTE[0], "right": PALETTE[1]}
    out, i = {}, 2
    for r in runs:
        colour = stance_colour.pop(r.stance, None)
        if colour is None:
            colour, i = PALETTE[i % len(PALETTE)], i + 1
        out[r.name] = colour
    return out


def trajectory_metrics(runs: Sequence[TuneRun], wanted: Sequence[str] = ("economic", "social")) -> list[str]:
    """The metrics to plot: economic and social when present, else the first numeric metrics found."""
    seen = list(dict.fromkeys(k for r in runs for row in r.trajectory for k, v in row["metrics"].items()
                              if isinstance(v, float | int) and not k.endswith("_ci")))
    chosen = [k for k in wanted if k in seen]
    return chosen or seen[:2]


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, steps=[1, 2, 5, 10])


def plot_trajectory(runs: Any, metrics: Sequence[str] | None = None, title: str | None = "Position during training",
                    colours: Mapping[str, str] | None = None):
    """Compass position against training step, one line per run, one panel per metric (economic, social).

    ``runs``: tuning run folders, trajectory.jsonl paths, ``{name: rows or path}`` or :class:`TuneRun` objects.
    A ``<metric>_ci`` entry in a row is drawn as a band.
    """
    runs = [r for r in _as_runs(runs) if r.trajectory]
    metrics = list(metrics or trajectory_metrics(runs)) or ["economic"]
    fig = _figure((5.2 * len(metrics) + 0.4, 4.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = {**run_colours(runs), **(colours or {})}
    for ax, metric in zip(axes, metrics, strict=True):
        for r in runs:
            pts = [(row["step"], row["metrics"][metric], row["metrics"].get(f"{metric}_ci"))
                   for row in r.trajectory if isinstance(row["metrics"].get(metric), float | int)]
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            label = r.name + (f" ({r.stance})" if r.stance and r.stance not in r.name else "")
            ax.plot(xs, ys, marker="o", markersize=4, lw=1.8, color=colours[r.name], label=label)
            band = [(p[0], p[2]) for p in pts if p[2]]
            if len(band) >= 2:
                ax.fill_between([b[0] for b in band], [b[1][0] for b in band], [b[1][1] for b in band],
                                color=colours[r.name], alpha=0.15, lw=0)
        ax.axhline(0, color="#777777", lw=0.8)
        ax.set_xlabel("Training step")
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_ylabel(_metric_label(metric))
        ax.set_title(metric.replace("_", " ").capitalize())
        ax.grid(True, alpha=0.3)
    _side_legend(axes[-1])
    if not runs:
        axes[0].text(0.5, 0.5, "no trajectories", transform=axes[0].transAxes, ha="center", color="#aa0000")
    if title:
        fig.suptitle(title)
    return fig


def _side_legend(ax) -> None:
    """One legend for all panels, outside the last one on the right (never over the data)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0,
                  title="run", title_fontsize=9)


def _metric_label(metric: str) -> str:
    return {"economic": "Economic  (− left / + right)",
            "social": "Social  (− libertarian / + authoritarian)"}.get(metric, metric.replace("_", " "))


def plot_training(runs: Sequence[TuneRun], title: str | None = "Training metrics", colours=None):
    """Loss and DPO reward margin (when logged) against step, from each run's metrics.jsonl."""
    runs = [r for r in runs if r.metrics]
    keys = [k for k in ("loss", "rewards/margins", "rewards/accuracies")
            if any(num_ok(row.get(k)) for r in runs for row in r.metrics)]
    keys = keys or ["loss"]
    fig = _figure((3.9 * len(keys) + 0.4, 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colours = {**run_colours(runs), **(colours or {})}
    for ax, k in zip(axes, keys, strict=True):
        for r in runs:
            pts = [(row["step"], row[k]) for row in r.metrics if num_ok(row.get(k)) and num_ok(row.get("step"))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.6, marker=".", color=colours[r.name],
                        label=r.name)
        ax.set_xlabel("Training step")
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_ylabel(k.replace("rewards/", "reward ").replace("_", " "))
        ax.set_title(k)
        ax.grid(True, alpha=0.3)
    _side_legend(axes[-1])
    if title:
        fig.suptitle(title)
    return fig


def num_ok(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x


# ---------------------------------------------------------------------------------------------------------


def plot_topics(topics: Any, title: str | None = "Per-question lean by model", colours: Mapping[str, str] | None = None,
                max_label: int = 28):
    """Per-question lean in [-1, 1] (− left/libertarian, + right/authoritarian) as grouped horizontal bars, one
    colour per model, questions grouped by axis; a side panel shows each model's mean with its 95% CI.
    Unscored answers (``null``) are marked with ×, never imputed.

    ``topics``: a topics.json path or dict, a list of them, or a list of :class:`TopicsModel`.
    """
    import numpy as np

    models = _as_topics(topics)
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
    n_q, n_m = len(qids), max(1, len(models))
    height = min(24.0, max(3.6, 0.12 * n_q * n_m + 0.25 * n_q + 1.6))  # capped: many bars get thinner
    fig = _figure((11.0, height))
    ax, axm = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3.2, 1.2]})
    colours = {**model_colours([m.name for m in models], {m.name: target_role(m.target) for m in models}),
               **(colours or {})}
    bar_h = 0.8 / n_m
    ypos = np.arange(n_q)[::-1].astype(float)  # first question on top
    for j, m in enumerate(models):
        scores = {q.id: q.score for q in m.questions}
        offs = ypos + 0.4 - bar_h * (j + 0.5)
        vals = [scores.get(q) for q in qids]
        ax.barh(offs, [v if v is not None else 0.0 for v in vals], height=bar_h * 0.92, color=colours[m.name],
                label=m.name)
        miss = [(o, q) for o, q, v in zip(offs, qids, vals, strict=True) if v is None and q in scores]
        if miss:
            ax.scatter([0.0] * len(miss), [o for o, _ in miss], marker="x", color=colours[m.name], s=22, zorder=3)
    ax.set_yticks(ypos)
    tag = {"economic": "econ", "social": "social"}
    ax.set_yticklabels([_short(meta[q][0], max_label) + (f"  [{tag.get(meta[q][1], meta[q][1])}]" if meta[q][1] else "")
                        for q in qids], fontsize=9)
    ax.axvline(0, color="#555555", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Lean per question  (− left / libertarian   |   + right / authoritarian)")
    ax.set_ylabel("Question (topic)")
    ax.grid(True, axis="x", alpha=0.3)
    if n_q:
        ax.set_ylim(-0.6, n_q - 0.4)
    if models:
        from matplotlib.lines import Line2D

        handles, labels = ax.get_legend_handles_labels()
        if any(q.score is None for m in models for q in m.questions):
            handles.append(Line2D([], [], marker="x", ls="", color="#555555"))
            labels.append("unscored")
        fig.legend(handles, labels, fontsize=9, loc="outside lower center", ncol=min(5, len(handles)),
                   frameon=False)
    # side panel: mean and CI per model
    ym = np.arange(len(models))[::-1]
    for y, m in zip(ym, models, strict=True):
        if m.mean.value is None:
            axm.text(0, y, "no score", ha="center", va="center", fontsize=8, color="#aa0000")
            continue
        err = ([[m.mean.value - m.mean.ci[0]], [m.mean.ci[1] - m.mean.value]] if m.mean.ci else None)
        axm.errorbar(m.mean.value, y, xerr=err, fmt="o", color=colours[m.name], capsize=4, markersize=7, lw=1.5)
    axm.set_yticks(ym)
    axm.set_yticklabels([m.name for m in models], fontsize=9)
    axm.axvline(0, color="#555555", lw=0.8)
    lo = min([-0.5] + [m.mean.ci[0] for m in models if m.mean.ci] + [m.mean.value for m in models if m.mean.ok])
    hi = max([0.5] + [m.mean.ci[1] for m in models if m.mean.ci] + [m.mean.value for m in models if m.mean.ok])
    axm.set_xlim(lo - 0.1, hi + 0.1)
    axm.set_ylim(-0.7, len(models) - 0.3)
    axm.set_xlabel("Mean lean (95% CI)")
    axm.set_title("Mean", fontsize=10)
    axm.grid(True, axis="x", alpha=0.3)
    scorer = ", ".join(sorted({m.scorer for m in models}))
    if title:
        fig.suptitle(f"{title}" + (f"  (scorer: {scorer})" if scorer else ""))
    if not models:
        ax.text(0, 0, "no topic scores", ha="center", color="#aa0000")
    return fig


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------------------------------------


def save_figure(fig, out_dir: Path, name: str, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``name.png`` and ``name.svg`` into ``out_dir`` (which the caller writes atomically as a whole)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.15,
                metadata={"Software": "politune"})
    fig.savefig(svg, facecolor="white", bbox_inches="tight", pad_inches=0.15, metadata={"Date": None})
    return png, svg
