"""Shared CLI helpers: consoles, progress bars, JSON output, ``--set`` overrides."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")

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


def run_with_progress(fn: Callable[[Callable[[str, int], None]], T]) -> tuple[T, float]:
    """Run ``fn(on_progress)`` under a progress bar, one bar per name that ``on_progress(name, n)`` reports
    (``answering (NAME)``); returns (its result, wall seconds to 0.1 s)."""
    from rich.progress import TaskID

    t0 = time.perf_counter()
    with progress() as bar:
        ids: dict[str, TaskID] = {}

        def on_progress(name: str, n: int) -> None:
            if name not in ids:
                ids[name] = bar.add_task(f"answering ({name})", total=None)
            bar.advance(ids[name], n)

        res = fn(on_progress)
    return res, round(time.perf_counter() - t0, 1)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def run_and_show(
    fn: Callable[[Callable[[str, int], None]], T],
    summary: Callable[[T, float], dict],
    show: Callable[[T, Path, float], None],
    out: Path,
    json_out: bool,
) -> None:
    """A measure command's tail: run ``fn`` under a progress bar (:func:`run_with_progress`), then print
    ``summary(result, wall)`` as JSON with ``--json``, else ``show(result, out, wall)`` (tables)."""
    res, wall = run_with_progress(fn)
    if json_out:
        print_json(summary(res, wall))
    else:
        show(res, out, wall)
