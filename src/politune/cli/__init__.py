"""The ``politune`` command. It only wires the pillars: each ``politune.cli.<pillar>`` module adds its commands
through ``register(app)``, and every command calls the pillar's public API.

Errors: a :class:`~politune.errors.PolituneError` (bad input, unknown model, invalid config) prints one line,
``error: ...``, and exits 2 with no traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from politune import __version__
from politune.cli import data, generate, measure, models, report, serve, study, tune
from politune.cli.common import console, err_console
from politune.errors import PolituneError

app = typer.Typer(
    name="politune",
    help="Measure and steer the political and economic leaning of language models.\n\n"
    "data -> tune -> measure -> report / serve. Start with `politune demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail.")) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[RichHandler(console=err_console, show_path=False)],
        format="%(message)s",
    )
    logging.getLogger("politune").setLevel(level)
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("POLITUNE_QUIET_LOADING", "1")
        for noisy in ("transformers", "datasets", "huggingface_hub", "accelerate", "peft", "trl"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command()
def version(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print politune's version and the versions of its main dependencies."""
    from politune.provenance import package_versions

    versions = {"politune": __version__, **package_versions()}
    if json_out:
        console.print_json(data=versions)
    else:
        for k, v in versions.items():
            console.print(f"{k:14s} {v}")


for _module in (models, data, tune, measure, generate, serve, report, study):
    _module.register(app)


def _usage_errors() -> tuple[type[Exception], ...]:
    """The usage-error class (unknown option, bad value) of whichever click the installed typer raises:
    typer >= 0.29 vendors its own copy (``typer._click``), whose exceptions are not ``click``'s."""
    import importlib

    found: list[type[Exception]] = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main() -> None:
    try:
        app(standalone_mode=False)
    except PolituneError as e:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # usage errors (unknown option, bad value) and aborts
        if isinstance(e, _usage_errors()):
            e.show()  # type: ignore[attr-defined]
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        if isinstance(e, typer.Abort):
            err_console.print("aborted")
            sys.exit(1)
        raise
