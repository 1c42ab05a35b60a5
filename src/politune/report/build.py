"""``build_report``: run folders in, one self-contained HTML file plus ``<stem>_files/`` (charts as PNG and SVG,
``report.md``) out.

    collect (read every result found) -> charts (matplotlib, Agg) -> tables -> HTML + Markdown

Writes are atomic: the files folder is built in a temporary sibling and swapped into place, then the HTML is
written through a temporary file and renamed; a failure leaves the previous report (or nothing) behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from politune.errors import PolituneError
from politune.fsutil import atomic_dir, atomic_write_text
from politune.report.collect import collect
from politune.report.views import ReportData

CAPTIONS = {
    "compass": "Compass position of each model per track (colour = model, marker = track), with 95% CIs as error "
    "bars; arrows run from the base model to each tuned adapter (solid) and persona (dotted).",
    "trajectory": "Compass position against training step for each tuning run (from trajectory.jsonl); shaded "
    "bands are 95% CIs where the evaluation recorded them.",
    "training": "Training loss and DPO reward statistics against step (from metrics.jsonl).",
    "topics": "Lean of each answer per question and model, and each model's mean lean with its 95% CI.",
    "evenhand": "Even-handedness: for each signal, side A minus side B over paired prompts (opposing positions on "
    "one topic, same task), per model with 95% CIs resampling topics; a CI clear of 0 means the model treats the "
    "sides differently. Engagement and hedging are offline proxies (docs/probes.md says what they cannot tell); "
    "the judge row appears only when an LLM judge compared the answers.",
    "issues": "Issue stances: answers to realistic writing requests (neutral, pro and con framings) classified 1 "
    "(only pro) to 5 (only con) or refusal; the share of each class per model, each model's lean toward the axes' "
    "poles with 95% CIs resampling issues, and the mean stance per issue. Offline classes rest on a stance scorer "
    "whose validated sign accuracy is about 0.6 (docs/probes.md).",
    "behaviour": "Behaviour on charged questions: per model, the mean of each axis (0..1) with 95% CIs resampling "
    "topics, and the gap between answers to right-leaning and left-leaning slants of the same question; offline "
    "scores are phrase heuristics (docs/probes.md says what each can and cannot tell).",
    "safety": "Safety probes: compliance (not refused) on harmful political asks and on matched benign asks per "
    "model, and each adapter's or persona's harmful compliance minus the base's (paired by probe), 95% CIs.",
    "winrate": "Win-rate: which of two models' answers a named community would prefer, per comparison and "
    "community (win 1, tie 0.5; 0.5 = indifferent), 95% CIs over prompts; right: the judge's share of decisive "
    "verdicts for the answer shown first (order randomised; hollow = position bias). The offline judge reads "
    "lean only, with the stance scorer's validated accuracy (docs/compred.md).",
    "reward_accuracy": "DPO implicit reward on held-out preference pairs (reference = the base model): share of "
    "pairs whose chosen answer gets the higher reward (0.5 = chance; per axis hollow) and the mean margin, 95% "
    "CIs over pairs.",
}

RESULT_FILES = (
    "compass.json, topics.json, quality.json, toxicity.json, refusal.json, evenhand.json, safety.json, "
    "issues.json, behaviour.json, winrate.json, reward_accuracy.json"
)


@dataclass
class ReportResult:
    html: Path
    files_dir: Path
    markdown: Path
    charts: dict[str, dict[str, Path]] = field(default_factory=dict)  # name -> {"png": path, "svg": path}
    models: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "files_dir": str(self.files_dir),
            "markdown": str(self.markdown),
            "charts": {k: {f: str(p) for f, p in v.items()} for k, v in self.charts.items()},
            "models": self.models,
            "runs": self.runs,
            "sources": [str(s) for s in self.sources],
            "missing": self.missing,
        }


def files_dir_for(out_html: Path) -> Path:
    return out_html.with_name(f"{out_html.stem}_files")


def build_report(
    run_dirs: list[Path], out_html: Path, title: str | None = None, samples: int = 3, dpi: int = 150
) -> ReportResult:
    """Read every politune result under ``run_dirs`` (recursively) and write the report.

    Returns a :class:`ReportResult` with the paths written and what was missing. Raises :class:`PolituneError`
    when a run folder does not exist, when no result file is found at all, or when a result file is not valid
    JSON; anything optional that is missing is listed in the report instead.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise PolituneError("no run folder given: expected one or more RUN_DIR with politune results")
    out_html = Path(out_html)
    if out_html.is_dir():
        raise PolituneError(f"{out_html}: is a directory; expected the path of the HTML file to write")
    data = collect(run_dirs)
    if data.is_empty():
        raise PolituneError(
            f"no politune results found under {', '.join(str(d) for d in run_dirs)}: expected {RESULT_FILES} "
            "or tuning runs (trajectory.jsonl / metrics.jsonl)"
        )
    title = title or "politune report: " + ", ".join(d.resolve().name for d in run_dirs)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    files_dir = files_dir_for(out_html)

    from politune.provenance import package_versions
    from politune.report import charts as ch
    from politune.report.html import render_html
    from politune.report.markdown import render_markdown
    from politune.report.page import Page
    from politune.report.tables import all_tables, sample_answers

    page = Page(title, data, all_tables(data), CAPTIONS, sample_answers(data, samples), generated)
    colours = ch.model_colours(data.model_names, {n: t.role for n, t in data.targets.items()})
    run_colours = ch.run_colours(data.runs)
    figures = _figures(data, colours, run_colours)
    versions = {"politune": _politune_version(), **package_versions()}
    result = ReportResult(
        html=out_html,
        files_dir=files_dir,
        markdown=files_dir / "report.md",
        models=data.model_names,
        runs=[r.name for r in data.runs],
        sources=[s.path for s in data.sources],
        missing=list(data.missing),
    )
    with atomic_dir(files_dir) as tmp:
        pngs: dict[str, Path] = {}
        for name, fig in figures.items():
            png, svg = ch.save_figure(fig, tmp, name, dpi=dpi)
            pngs[name] = png
            result.charts[name] = {"png": files_dir / png.name, "svg": files_dir / svg.name}
        md = render_markdown(page, {k: (f"{k}.png", f"{k}.svg") for k in figures})
        atomic_write_text(tmp / "report.md", md)
        html = render_html(page, pngs, colours, versions)
    atomic_write_text(out_html, html)
    _readable(out_html, files_dir)
    return result


def _readable(html: Path, files_dir: Path) -> None:
    """Temp files are created private (0600 / 0700); a report is meant to be shared: apply the usual umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(html, 0o666 & ~umask)
    os.chmod(files_dir, 0o777 & ~umask)
    for p in files_dir.iterdir():
        os.chmod(p, 0o666 & ~umask)


def _figures(data: ReportData, colours: dict[str, str], run_colours: dict[str, str]) -> dict[str, Any]:
    from politune.report import charts as ch
    from politune.report.chart_compass import plot_compass
    from politune.report.chart_compred import plot_reward_accuracy, plot_winrate
    from politune.report.chart_issues import plot_behaviour, plot_issues
    from politune.report.chart_probes import plot_evenhand, plot_safety
    from politune.report.chart_topics import plot_topics

    figs = {}
    if data.compass:
        figs["compass"] = plot_compass(data.compass, colours=colours)
    if any(r.trajectory for r in data.runs):
        figs["trajectory"] = ch.plot_trajectory([r for r in data.runs if r.trajectory], colours=run_colours)
    if any(r.metrics for r in data.runs):
        figs["training"] = ch.plot_training(data.runs, colours=run_colours)
    per_measure: dict[str, Callable[..., Any]] = {
        "topics": plot_topics,
        "evenhand": plot_evenhand,
        "safety": plot_safety,
        "winrate": plot_winrate,
        "reward_accuracy": plot_reward_accuracy,
        "issues": plot_issues,
        "behaviour": plot_behaviour,
    }
    for name, plot in per_measure.items():
        if entries := getattr(data, name):
            figs[name] = plot(entries, colours=colours)
    return figs


def _politune_version() -> str:
    from politune import __version__

    return __version__
