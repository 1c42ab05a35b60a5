"""CLI for the `report` pillar: ``politune report RUN_DIR ... -o report.html``. It only calls
:func:`politune.report.build_report`."""

from __future__ import annotations

from pathlib import Path

import typer

from politune.cli.common import JsonOption, console, err_console, print_json


def register(app: typer.Typer) -> None:
    """Add this pillar's commands to the root app."""

    @app.command("report")
    def report(
        run_dirs: list[Path] = typer.Argument(
            ...,
            metavar="RUN_DIR",
            help="Run folders (or result files) to read; searched "
            "recursively for compass.json, topics.json, quality.json, "
            "toxicity.json, refusal.json and tuning runs.",
            show_default=False,
        ),
        output: Path = typer.Option(
            Path("report.html"),
            "--output",
            "-o",
            help="HTML file to write; charts (PNG, SVG) and report.md go to <stem>_files/ beside it.",
        ),
        title: str | None = typer.Option(
            None, "--title", help="Report title (default: 'politune report: ' and the run folder names)."
        ),
        samples: int = typer.Option(
            3, "--samples", min=0, help="Held-out questions shown with base vs adapter answers."
        ),
        dpi: int = typer.Option(150, "--dpi", min=50, max=600, help="Resolution of the PNG charts."),
        json_out: bool = JsonOption,
    ) -> None:
        """Build one self-contained HTML report (compass, trajectories, topic bars, side effects, sample answers,
        provenance) from result folders; says what is missing."""
        from politune.report import build_report

        result = build_report(run_dirs, output, title=title, samples=samples, dpi=dpi)
        for m in result.missing:  # on stderr in both modes: stdout stays clean JSON with --json
            err_console.print(f"[yellow]missing:[/] {m}", highlight=False, soft_wrap=True)
        if json_out:
            print_json(result.to_dict())
            return
        console.print(f"[bold]report[/] {result.html}", highlight=False)
        console.print(
            f"charts  {', '.join(result.charts) or 'none'} (PNG + SVG in {result.files_dir})", highlight=False
        )
        console.print(f"summary {result.markdown}", highlight=False)
        console.print(
            f"models  {', '.join(result.models) or 'none'}; runs {', '.join(result.runs) or 'none'}",
            highlight=False,
        )
