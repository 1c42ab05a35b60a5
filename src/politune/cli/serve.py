"""``politune serve``: an OpenAI-compatible server for one base model and one LoRA adapter per stance, with a
side-by-side comparison page at ``/``; ``--backend vllm`` runs the equivalent ``vllm serve`` on a GPU."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from politune.cli.common import DeviceOption, DtypeOption, console, err_console
from politune.errors import PolituneError
from politune.serve.limits import Endpoint, ServeLimits

if TYPE_CHECKING:
    from politune.serve.vllm import VllmCommand


_LIMITS = ServeLimits()  # the defaults of the --max-* options


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    model: str = typer.Option(
        "smollm2-135m", "--model", "-m", help="Base model: registry name, local dir or hub id."
    ),
    adapter: list[str] = typer.Option(
        None,
        "--adapter",
        "-a",
        help="NAME=DIR: a PEFT LoRA adapter served as model "
        "NAME (repeatable). Names: letters, digits, '.', '_', '-'.",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback needs --api-key."),
    port: int = typer.Option(8000, help="Port (0: a free one)."),
    api_key: str = typer.Option(
        None,
        "--api-key",
        envvar="POLITUNE_API_KEY",
        help="Require 'Authorization: Bearer KEY' (or set POLITUNE_API_KEY).",
    ),
    compass: str = typer.Option(
        None,
        "--compass",
        help="compass.json from `politune measure compass`: the page shows each model's compass point.",
    ),
    backend: str = typer.Option("hf", help="hf: this server (transformers + PEFT) | vllm: run `vllm serve`."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --backend vllm: print the command, do not run it."
    ),
    served_name: str | None = typer.Option(
        None,
        "--served-name",
        help="Name of the base model in /v1/models (default: --model; 'base' always works too).",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    max_tokens: int = typer.Option(
        _LIMITS.max_tokens, "--max-tokens", help="Largest max_tokens a request may ask for."
    ),
    max_n: int = typer.Option(_LIMITS.max_n, "--max-n", help="Largest n (choices per request)."),
    max_queue: int = typer.Option(
        _LIMITS.max_queue, "--max-queue", help="Requests that may wait; more get 429."
    ),
    max_body: int = typer.Option(
        _LIMITS.max_body_bytes, "--max-body-bytes", help="Largest request body; more get 413."
    ),
    max_batch: int = typer.Option(
        _LIMITS.max_batch_rows,
        "--max-batch",
        help="Sequences decoded together (any adapters); docs/benchmarks.md compares 8, 32 and 100.",
    ),
    scheduler: str = typer.Option(
        _LIMITS.scheduler,
        "--scheduler",
        help="continuous: requests join and leave the batch at every step, adapters mixed in one forward | "
        "static: one same-adapter batch decoded to completion at a time (the previous engine).",
    ),
    vllm_arg: list[str] = typer.Option(
        None,
        "--vllm-arg",
        help="Extra argument passed to `vllm serve` "
        "(repeatable), e.g. --vllm-arg=--gpu-memory-utilization=0.8.",
    ),
) -> None:
    """Serve a base model and its stance adapters over an OpenAI-compatible API (+ comparison page at /)."""
    from politune.measure.targets import parse_named
    from politune.serve.server import check_bind

    adapters = parse_named(adapter, "adapter")
    if backend not in ("hf", "vllm"):
        raise PolituneError(f"--backend {backend!r}: expected hf or vllm")
    if scheduler not in ("continuous", "static"):
        raise PolituneError(f"--scheduler {scheduler!r}: expected continuous or static")
    _check(
        adapters,
        {
            "--max-tokens": max_tokens,
            "--max-n": max_n,
            "--max-queue": max_queue,
            "--max-body-bytes": max_body,
            "--max-batch": max_batch,
        },
    )
    check_bind(host, api_key)
    endpoint = Endpoint(host, port, api_key)
    if backend == "vllm":
        from politune.serve import vllm_command

        _run_vllm(vllm_command(model, adapters, endpoint, served_name, dtype, vllm_arg or []), dry_run)
        return
    if dry_run:
        raise PolituneError("--dry-run only applies to --backend vllm")

    from politune.serve import load_compass_points
    from politune.serve import serve as run_server

    compass_data = load_compass_points(compass) if compass else None  # fail before loading the model
    limits = ServeLimits(
        max_body_bytes=max_body,
        max_tokens=max_tokens,
        max_n=max_n,
        max_queue=max_queue,
        max_batch_rows=max_batch,
        scheduler=scheduler,
        default_max_tokens=min(_LIMITS.default_max_tokens, max_tokens),
    )
    run_server(
        model,
        adapters,
        endpoint,
        limits=limits,
        compass=compass if compass_data is not None else None,
        device=device,
        dtype=dtype,
        served_name=served_name,
        on_ready=_announce([served_name or model, *adapters]),
    )


def _announce(names: list[str]) -> Callable[[str], None]:
    def ready(url: str) -> None:
        err_console.print(
            f"serving {', '.join(names)} at {url}/v1 (comparison page: {url}/); Ctrl-C to stop",
            highlight=False,
            soft_wrap=True,
        )

    return ready


def _check(adapters: dict[str, str], limits: dict[str, int]) -> None:
    """Adapter folders exist; every limit is a positive integer."""
    for name, adir in adapters.items():
        if not os.path.isdir(adir):
            raise PolituneError(f"--adapter {name}={adir}: directory not found")
    for flag, value in limits.items():
        if value < 1:
            raise PolituneError(f"{flag} {value}: expected a positive integer")


def _run_vllm(cmd: VllmCommand, dry_run: bool) -> None:
    if dry_run:
        console.print(cmd.shell(), highlight=False, soft_wrap=True, markup=False)
        return
    exe = shutil.which(cmd.argv[0])
    if exe is None:
        raise PolituneError(
            "vllm is not installed (pip install 'politune[gpu]' on a CUDA machine); "
            f"the command would be: {cmd.shell()}"
        )
    err_console.print(f"running: {cmd.shell()}", highlight=False, soft_wrap=True, markup=False)
    os.execve(exe, cmd.argv, {**os.environ, **cmd.env})
