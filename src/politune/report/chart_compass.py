"""The compass chart: economic by social, quadrants named, each model a point per track with its 95% CI, and
arrows from the base model to each adapter and persona."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from politune.report.charts import QUADRANTS, as_compass, model_colours, new_figure, track_marker
from politune.report.views import CompassModel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


def plot_compass(
    compass: Any,
    ax: Axes | None = None,
    title: str | None = "Political compass",
    tracks: Sequence[str] | None = None,
    limit: float = 10.0,
    colours: Mapping[str, str] | None = None,
) -> Figure | SubFigure:
    """Economic (x) by social (y) on [-limit, limit], quadrants shaded and named; each model a point per track
    with its 95% CI as error bars (colour = model, marker = track); arrows from the base model to every tuned
    adapter (solid) and persona (dotted), per track.

    ``compass``: a compass.json path or dict, a list of them, or a list of :class:`CompassModel`.
    """
    models = as_compass(compass)
    fig = ax.figure if ax is not None else new_figure((8.6, 7.0))
    ax = ax if ax is not None else fig.add_subplot()
    all_tracks = list(dict.fromkeys(t for m in models for t in m.tracks))
    tracks = [t for t in (tracks or all_tracks) if t in all_tracks]
    colours = {**model_colours([m.name for m in models], {m.name: m.role for m in models}), **(colours or {})}
    lim = _frame(ax, models, limit)
    arrow_tracks = _arrows(ax, models, tracks, colours)
    _points(ax, models, (tracks, all_tracks), colours)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("Economic  (← left   |   right →)")
    ax.set_ylabel("Social  (← libertarian   |   authoritarian →)")
    if title:
        ax.set_title(title)
    ax.grid(True, color="white", lw=0.6, alpha=0.8, zorder=0)
    _legend(ax, models, (tracks, all_tracks), colours, arrow_tracks)
    if not models or not tracks:
        ax.text(0, 0, "no compass results", ha="center", va="center", fontsize=12, color="#aa0000")
    return fig


def _frame(ax: Axes, models: list[CompassModel], limit: float) -> float:
    """Shade and name the quadrants; the half-width of the frame (grown if a writer used a wider scale)."""
    lim = limit
    for m in models:
        for tr in m.tracks.values():
            for e in (tr.economic, tr.social):
                for v in ([e.value] if e.value is not None else []) + list(e.ci or ()):
                    lim = max(lim, abs(v) * 1.05)
    for sx, sy, name, colour in QUADRANTS:
        ax.fill_between([0, sx * lim], 0, sy * lim, color=colour, alpha=0.35, linewidth=0, zorder=0)
        ax.text(
            sx * lim * 0.97,
            sy * lim * 0.97,
            name,
            ha="right" if sx > 0 else "left",
            va="top" if sy > 0 else "bottom",
            fontsize=10,
            color="#444444",
            alpha=0.9,
            zorder=1,
            fontweight="bold",
        )
    ax.axhline(0, color="#777777", lw=0.8, zorder=1)
    ax.axvline(0, color="#777777", lw=0.8, zorder=1)
    return lim


def _base_of(models: list[CompassModel], m: CompassModel) -> CompassModel | None:
    """The base measured in the same result file, else one of the same base model, else the first."""
    bases = [b for b in models if b.role == "base"]
    for same in (
        lambda b: b.source is not None and b.source == m.source,
        lambda b: b.target.model == m.target.model,
        lambda b: True,
    ):
        found = next((b for b in bases if same(b)), None)
        if found is not None:
            return found
    return None


def _arrows(ax: Axes, models: list[CompassModel], tracks: list[str], colours: Mapping[str, str]) -> set[str]:
    """An arrow from the base to each adapter (solid) and persona (dotted), on the track where it moved
    furthest (a blind track would draw a dot-sized arrow); the tracks used. Drawn first, under the points."""
    arrow_tracks = set()
    for m in models:
        base = _base_of(models, m)
        if m.role == "base" or base is None:
            continue
        moves = []
        for t in tracks:
            a, b = base.tracks.get(t), m.tracks.get(t)
            pa, pb = a.point() if a else None, b.point() if b else None
            if pa and pb:
                dist = (pb[0] - pa[0]) ** 2 + (pb[1] - pa[1]) ** 2
                moves.append((dist, -tracks.index(t), t, pa, pb))
        if not moves:
            continue
        _, _, t, pa, pb = max(moves)
        arrow_tracks.add(t)
        ax.annotate(
            "",
            xy=pb,
            xytext=pa,
            arrowprops={
                "arrowstyle": "-|>",
                "color": colours[m.name],
                "lw": 1.6,
                "alpha": 0.85,
                "mutation_scale": 16,
                "shrinkA": 5,
                "shrinkB": 6,
                "linestyle": "-" if m.role == "adapter" else (0, (2, 2)),
            },
            zorder=3.5,
        )
    return arrow_tracks


def _points(
    ax: Axes, models: list[CompassModel], tracks_all: tuple[list[str], list[str]], colours: Mapping[str, str]
) -> None:
    """Each model's point per track, with its 95% CI as error bars (colour = model, marker = track)."""
    tracks, all_tracks = tracks_all
    for m in models:
        for t in tracks:
            tr = m.tracks.get(t)
            p = tr.point() if tr else None
            if tr is None or p is None:
                continue
            x, y = p
            xerr, yerr = tr.economic.error_bar(), tr.social.error_bar()
            ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt=track_marker(t, all_tracks),
                color=colours[m.name],
                ecolor=colours[m.name],
                elinewidth=1.0,
                capsize=2.5,
                markersize=8,
                markeredgecolor="white",
                markeredgewidth=0.8,
                alpha=0.95,
                zorder=3,
            )


def _legend(
    ax: Axes,
    models: list[CompassModel],
    tracks_all: tuple[list[str], list[str]],
    colours: Mapping[str, str],
    arrow_tracks: set[str],
) -> None:
    from matplotlib.lines import Line2D

    tracks, all_tracks = tracks_all
    model_handles = [
        Line2D([], [], color=colours[m.name], marker="o", ls="", markersize=8, label=f"{m.name} ({m.role})")
        for m in models
    ]
    track_handles = [
        Line2D(
            [],
            [],
            color="#555555",
            marker=track_marker(t, all_tracks),
            ls="",
            markersize=8,
            label=f"track: {t}",
        )
        for t in tracks
    ]
    on = f" ({', '.join(t for t in tracks if t in arrow_tracks)})" if len(tracks) > 1 and arrow_tracks else ""
    style_handles = [
        Line2D([], [], color="#555555", lw=1.3, label=f"base → adapter{on}"),
        Line2D([], [], color="#555555", lw=1.3, ls=(0, (2, 2)), label=f"base → persona{on}"),
    ]
    if not any(m.role == "persona" for m in models):
        style_handles.pop()
    if not any(m.role == "adapter" for m in models):
        style_handles.pop(0)
    handles = (
        model_handles
        + track_handles
        + style_handles
        + [Line2D([], [], color="#555555", marker="|", ls="", markersize=10, label="error bars: 95% CI")]
    )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=9,
        frameon=False,
        borderaxespad=0,
        ncol=1 if len(handles) <= 18 else 2,
    )
