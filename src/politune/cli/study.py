"""``politune demo`` and ``politune run STUDY.yaml``: whole experiments, wired from politune.study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from politune.cli.common import OverridesOption, console, err_console

FreshOption = typer.Option(False, "--fresh", help="Redo every stage instead of skipping finished ones.")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("run")(run)


def _events() -> Callable[[str, str], None]:
    def on_event(stage: str, status: str) -> None:
        err_console.print(f"[bold cyan]{stage:24s}[/] {status}", highlight=False)

    return on_event


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder."),
    fresh: bool = FreshOption,
    overrides: list[str] = OverridesOption,
) -> None:
    """The end-to-end demo on the embedded default model: built-in data -> left and right DPO adapters ->
    compass, topic scores, quality, toxicity -> OUT/report.html and a summary table. Re-running skips
    finished stages."""
    from politune.study import demo_config_path, load_study, run_study
    from politune.study.summary import print_summary

    cfg = load_study(demo_config_path(), overrides)
    res = run_study(cfg, out, fresh=fresh, on_event=_events())
    print_summary(res, console)


def run(
    study: Path = typer.Argument(..., help="Study YAML (see examples/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Study folder (default runs/NAME)."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Validate the study (config, recipe, data sources, "
        "sweep keys) and exit without running anything.",
    ),
    fresh: bool = FreshOption,
    overrides: list[str] = OverridesOption,
) -> None:
    """Run a declarative study: data recipe + tune recipe + measures, with `sweep:` over any config key. Each
    cell gets its own run folder; a results table (CSV + Markdown) and one report cover all cells. Finished
    cells are never redone; a crashed cell resumes."""
    from politune.study import load_study, run_study
    from politune.study.check import check_study
    from politune.study.summary import print_summary

    cfg = load_study(study, overrides)
    if check:
        lines = check_study(cfg)
        for line in lines:
            console.print(line, highlight=False)
        console.print(f"{study}: ok", highlight=False)
        return
    res = run_study(cfg, out or Path("runs") / cfg.name, fresh=fresh, on_event=_events())
    print_summary(res, console)
