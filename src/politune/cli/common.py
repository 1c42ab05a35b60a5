"""Shared CLI helpers: consoles, progress bars, JSON output, ``--set`` overrides, option groups."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, get_type_hints

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
G = TypeVar("G")

console = Console()
err_console = Console(stderr=True)

OverridesOption = typer.Option(
    None,
    "--set",
    "-s",
    help="Config override KEY=VALUE (dotted keys, repeatable), e.g. --set beta=0.2 --set lora.r=8.",
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
DeviceOption = typer.Option("auto", "--device", help="auto | cpu | cuda | mps.")
DtypeOption = typer.Option(
    "auto",
    "--dtype",
    help="auto | float32 | bfloat16 | float16. auto: bf16 on Ampere+ GPUs; on a CPU bf16 only where a native bf16 "
    "path is found and measured faster at start-up, else fp32.",
)
ThreadsOption = typer.Option(
    0,
    "--threads",
    help="CPU threads for torch (0 = torch's default). On a "
    "machine shared with other jobs, 1 is often several times faster.",
)


def set_threads(threads: int) -> None:
    """Apply ``--threads``: torch's CPU thread count, unless 0 (torch's default)."""
    from politune.errors import PolituneError

    if threads < 0:
        raise PolituneError(f"--threads {threads}: expected 0 (default) or a positive number")
    if threads:
        import torch

        torch.set_num_threads(threads)


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
    summary: Callable[[T, float], dict[str, Any]],
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


@dataclasses.dataclass(frozen=True)
class OptionGroup(Generic[G]):
    """Options that several commands take together, handed to a command as one dataclass ``args``: the
    command declares one parameter for the whole group (``targets: TargetArgs = TargetGroupOption``) and
    :func:`expand_option_groups` spells it out as one option per field of ``args`` (in field order, with the
    field's type), ``options`` giving each field's ``typer.Option``."""

    args: type[G]
    options: dict[str, Any]

    def __post_init__(self) -> None:
        fields = [f.name for f in dataclasses.fields(self.args)]  # type: ignore[arg-type]
        if fields != list(self.options):
            raise ValueError(f"{self.args.__name__}: options {list(self.options)} != fields {fields}")

    def parameters(self) -> list[inspect.Parameter]:
        types = get_type_hints(self.args)
        keyword = inspect.Parameter.KEYWORD_ONLY
        return [
            inspect.Parameter(n, keyword, default=o, annotation=types[n]) for n, o in self.options.items()
        ]

    def pack(self, values: dict[str, Any]) -> G:
        """Take this group's options out of ``values`` (a command's keyword arguments) as one ``args``."""
        return self.args(**{name: values.pop(name) for name in self.options})


def expand_option_groups(command: Callable[..., T]) -> Callable[..., T]:
    """``command`` as typer should see it: each parameter whose default is an :class:`OptionGroup` replaced,
    in place, by that group's options; called with them, it calls ``command`` with each group packed into
    its dataclass. The command line (flags, order, defaults, help) is the same as if each option were spelt
    out in the signature."""
    signature = inspect.signature(command, eval_str=True)
    groups = {n: p.default for n, p in signature.parameters.items() if isinstance(p.default, OptionGroup)}
    parameters: list[inspect.Parameter] = []
    for name, param in signature.parameters.items():
        keyword = param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        parameters += groups[name].parameters() if name in groups else [keyword]

    @functools.wraps(command)
    def with_groups_packed(**values: Any) -> T:
        for name, group in groups.items():
            values[name] = group.pack(values)
        return command(**values)

    with_groups_packed.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_groups_packed.__annotations__ = {p.name: p.annotation for p in parameters}
    with_groups_packed.__annotations__["return"] = signature.return_annotation
    return with_groups_packed
