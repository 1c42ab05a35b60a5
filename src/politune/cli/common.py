"""Shared CLI helpers: consoles, progress bars, JSON output, ``--set`` overrides."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)

OverridesOption = typer.Option(
    None,
    "--set",
    "-s",
    help="Config override KEY=VALUE (dotted keys, repeatable), e.g. --set beta=0.2 --set lora.r=8.",
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
DeviceOption = typer.Option("auto", help="auto | cpu | cuda | mps")
DtypeOption = typer.Option(
    "auto",
    "--dtype",
    help="auto | float32 | bfloat16 | float16. auto: bf16 on Ampere+ GPUs; on a CPU bf16 only where a native bf16 "
    "path is found and measured faster at start-up, else fp32.",
)


def progress() -> Progress:
    """A rich progress bar with count, rate-derived ETA and elapsed time (drawn on stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
