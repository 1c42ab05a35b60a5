"""The report's charts, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend).

Each ``plot_*`` function takes results (the views from :mod:`politune.report.collect`, a typed result from
:mod:`politune.measure.results`, a result dict as written to disk, or a path to the file), draws into ``ax`` when given or into a new
:class:`~matplotlib.figure.Figure`, and returns the figure. :func:`save_figure` writes it as PNG and SVG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from politune.errors import PolituneError
from politune.measure.results import CompassResult, TopicsResult, load_result
from politune.report.views import (
    CompassModel,
    TopicsModel,
    TuneRun,
    parse_compass,
    parse_topics,
    read_trajectory,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

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


ViewT = TypeVar("ViewT", CompassModel, TopicsModel)


def new_figure(figsize: tuple[float, float]) -> Figure:
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


def model_rows_figure(
    names: Sequence[str], colours: Mapping[str, str] | None, row_height: float
) -> tuple[Figure, tuple[Axes, Axes], Any, dict[str, str]]:
    """A two-panel figure (the left one wider) with one row per model, ``row_height`` inches each: the figure,
    its panels, each row's y (numpy, the first model on top) and each model's colour (``colours`` first)."""
    import numpy as np

    fig = new_figure((10.0, max(2.8, row_height * len(names) + 1.8)))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1.2]})
    ys = np.arange(len(names))[::-1].astype(float)
    return fig, (left, right), ys, {**model_colours(names), **(colours or {})}


def track_marker(track: str, tracks: Sequence[str]) -> str:
    if track in TRACK_MARKERS:
        return TRACK_MARKERS[track]
    extra = [t for t in tracks if t not in TRACK_MARKERS]
    return _EXTRA_MARKERS[extra.index(track) % len(_EXTRA_MARKERS)] if track in extra else "o"


def _load(obj: Any) -> Any:
    """A result file path -> its typed result (``politune.measure.results``); anything else unchanged."""
    if isinstance(obj, str | os.PathLike):
        return load_result(Path(obj))
    return obj


def _as_models(
    obj: Any, result_type: type, parse: Callable[[Any], list[ViewT]], view_type: type[ViewT]
) -> list[ViewT]:
    """A result (path, dict or typed), or a list of results and views -> the views it holds."""
    obj = _load(obj)
    if isinstance(obj, dict | result_type):
        return parse(obj)
    out: list[ViewT] = []
    for x in obj or []:
        out.extend([x] if isinstance(x, view_type) else _as_models(x, result_type, parse, view_type))
    return out


def as_compass(compass: Any) -> list[CompassModel]:
    return _as_models(compass, CompassResult, parse_compass, CompassModel)


def as_topics(topics: Any) -> list[TopicsModel]:
    return _as_models(topics, TopicsResult, parse_topics, TopicsModel)


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
            out.append(
                TuneRun(name=(p if p.is_dir() else p.parent).name, path=p, trajectory=read_trajectory(f))
            )
    return out


def run_colours(runs: Sequence[TuneRun]) -> dict[str, str]:
    """A stable colour per tuning run: the first left-stance run blue, the first right-stance run vermillion."""
    stance_colour = {"left": PALETTE[0], "right": PALETTE[1]}
    out, i = {}, 2
    for r in runs:
        colour = stance_colour.pop(r.stance, None) if r.stance is not None else None
        if colour is None:
            colour, i = PALETTE[i % len(PALETTE)], i + 1
        out[r.name] = colour
    return out


def trajectory_metrics(runs: Sequence[TuneRun], wanted: Sequence[str] = ("economic", "social")) -> list[str]:
    """The metrics to plot: economic and social when present, else the first numeric metrics found."""
    seen = list(
        dict.fromkeys(
            k
            for r in runs
            for row in r.trajectory
            for k, v in row["metrics"].items()
            if isinstance(v, float | int) and not k.endswith("_ci")
        )
    )
    chosen = [k for k in wanted if k in seen]
    return chosen or seen[:2]


def _run_panels(
    runs: Sequence[TuneRun], n: int, panel: tuple[float, float], colours: Mapping[str, str] | None
) -> tuple[Figure, Sequence[Axes], dict[str, str]]:
    """A figure of ``n`` panels side by side (each ``panel`` inches), its axes, and each run's colour
    (``colours`` overriding :func:`run_colours`)."""
    fig = new_figure((panel[0] * n + 0.4, panel[1]))
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, axes, {**run_colours(runs), **(colours or {})}


def _integer_locator() -> MaxNLocator:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, steps=[1, 2, 5, 10])


def plot_trajectory(
    runs: Any,
    metrics: Sequence[str] | None = None,
    title: str | None = "Position during training",
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Compass position against training step, one line per run, one panel per metric (economic, social).

    ``runs``: tuning run folders, trajectory.jsonl paths, ``{name: rows or path}`` or :class:`TuneRun` objects.
    A ``<metric>_ci`` entry in a row is drawn as a band.
    """
    runs = [r for r in _as_runs(runs) if r.trajectory]
    metrics = list(metrics or trajectory_metrics(runs)) or ["economic"]
    fig, axes, colours = _run_panels(runs, len(metrics), (5.2, 4.4), colours)
    for ax, metric in zip(axes, metrics, strict=True):
        for r in runs:
            pts = [
                (row["step"], row["metrics"][metric], row["metrics"].get(f"{metric}_ci"))
                for row in r.trajectory
                if isinstance(row["metrics"].get(metric), float | int)
            ]
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            label = r.name + (f" ({r.stance})" if r.stance and r.stance not in r.name else "")
            ax.plot(xs, ys, marker="o", markersize=4, lw=1.8, color=colours[r.name], label=label)
            band = [(p[0], p[2]) for p in pts if p[2]]
            if len(band) >= 2:
                ax.fill_between(
                    [b[0] for b in band],
                    [b[1][0] for b in band],
                    [b[1][1] for b in band],
                    color=colours[r.name],
                    alpha=0.15,
                    lw=0,
                )
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


def _side_legend(ax: Axes) -> None:
    """One legend for all panels, outside the last one on the right (never over the data)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            fontsize=9,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            borderaxespad=0,
            title="run",
            title_fontsize=9,
        )


def _metric_label(metric: str) -> str:
    return {
        "economic": "Economic  (− left / + right)",
        "social": "Social  (− libertarian / + authoritarian)",
    }.get(metric, metric.replace("_", " "))


def plot_training(
    runs: Sequence[TuneRun], title: str | None = "Training metrics", colours: Mapping[str, str] | None = None
) -> Figure:
    """Loss and DPO reward margin (when logged) against step, from each run's metrics.jsonl."""
    runs = [r for r in runs if r.metrics]
    keys = [
        k
        for k in ("loss", "rewards/margins", "rewards/accuracies")
        if any(num_ok(row.get(k)) for r in runs for row in r.metrics)
    ]
    keys = keys or ["loss"]
    fig, axes, colours = _run_panels(runs, len(keys), (3.9, 3.6), colours)
    for ax, k in zip(axes, keys, strict=True):
        for r in runs:
            pts = [
                (row["step"], row[k]) for row in r.metrics if num_ok(row.get(k)) and num_ok(row.get("step"))
            ]
            if pts:
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    lw=1.6,
                    marker=".",
                    color=colours[r.name],
                    label=r.name,
                )
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


def save_figure(fig: Figure, out_dir: Path, name: str, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``name.png`` and ``name.svg`` into ``out_dir`` (which the caller writes atomically as a whole)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(
        png,
        dpi=dpi,
        facecolor="white",
        bbox_inches="tight",
        pad_inches=0.15,
        metadata={"Software": "politune"},
    )
    fig.savefig(svg, facecolor="white", bbox_inches="tight", pad_inches=0.15, metadata={"Date": None})
    return png, svg
