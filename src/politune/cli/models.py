"""``politune models list | pull NAME | info NAME``."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from politune.cli.common import DeviceOption, DtypeOption, JsonOption, console, print_json

models_app = typer.Typer(
    help="List, pull and inspect models (registry names, local dirs, hub ids).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models(json_out: bool = JsonOption) -> None:
    """Registry names and whether each is already in the local cache."""
    from politune.models.registry import REGISTRY, models_dir

    rows = [
        {
            "name": e.name,
            "source": e.source,
            "hf_id": e.hf_id,
            "cached": (models_dir() / e.name).is_dir(),
            "description": e.description,
        }
        for e in REGISTRY.values()
    ]
    if json_out:
        print_json(rows)
        return
    table = Table("name", "source", "cached", "description")
    for e, r in zip(REGISTRY.values(), rows, strict=True):
        table.add_row(e.name, e.source, "yes" if r["cached"] else "", e.description)
    console.print(table)


@models_app.command()
def pull(
    name: str = typer.Argument(..., help="Registry name, hub id (org/name) or local directory."),
    force: bool = typer.Option(False, "--force", help="Rebuild the cache even if it is valid."),
) -> None:
    """Make a model available locally (the default model is converted once from its GGUF)."""
    from politune.models import pull as do_pull

    t = time.perf_counter()
    with console.status(f"pulling {name}"):
        path = do_pull(name, force=force)
    console.print(f"{name}: {path} ({time.perf_counter() - t:.1f}s)")


@models_app.command()
def info(
    name: str = typer.Argument(..., help="Registry name, hub id or local directory."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    json_out: bool = JsonOption,
) -> None:
    """Parameters, dtype, device and cache path."""
    from politune.models import model_info

    data = model_info(name, device=device, dtype=dtype)
    if json_out:
        print_json(data)
        return
    for k, v in data.items():
        console.print(f"{k:20s} {v}")


@models_app.command()
def chat(
    name: str = typer.Argument("smollm2-135m"),
    prompt: str = typer.Argument(...),
    adapter: str | None = typer.Option(None, help="LoRA adapter directory."),
    system: str | None = typer.Option(None, help="System message."),
    max_new_tokens: int = typer.Option(128),
    temperature: float = typer.Option(0.0),
    seed: int = typer.Option(0),
) -> None:
    """Answer one prompt with a model (and optional adapter)."""
    from politune.models import generate, load_model

    model, tok = load_model(name, adapter=adapter)
    (answer,) = generate(
        model, tok, [prompt], system=system, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    console.print(answer, highlight=False)
