"""``politune tune sft | dpo | sft-dpo | merge | recipes``: wires :mod:`politune.tune`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from politune.cli.common import (
    JsonOption,
    OptionGroup,
    OverridesOption,
    ThreadsOption,
    console,
    expand_option_groups,
    print_json,
    set_threads,
)

tune_app = typer.Typer(
    help="Tune a model toward a stance: SFT, DPO, SFT->DPO with LoRA (TRL + PEFT).", no_args_is_help=True
)

ConfigOption = typer.Option(
    "cpu-smollm2",
    "--config",
    "-c",
    help="Recipe: a shipped name (see `politune tune recipes`) or a YAML path.",
)
DataOption = typer.Option(
    ...,
    "--data",
    "-d",
    help="Training data: builtin:left, builtin:right, a JSONL/CSV/"
    "Parquet file, a folder or hf:NAME (see docs/data.md).",
)
EvalDataOption = typer.Option(
    None,
    "--eval-data",
    help="Pairs the adapter never trains on, scored at the end "
    "(all rows of the spec, e.g. builtin:left:heldout): eval_rewards/accuracies etc.",
)
SplitOption = typer.Option("train", "--split", help="Split of the data to train on ('' = all rows).")
OutOption = typer.Option(None, "--out", "-o", help="Run folder (default runs/<method>-<stance or recipe>).")
BaseOption = typer.Option(None, "--base", "-m", help="Base model (default: the recipe's `base`).")
StanceOption = typer.Option(
    None, "--stance", help="Target stance recorded in the model card (left, right, ...)."
)
ResumeOption = typer.Option(False, "--resume", help="Continue from the last checkpoint in the run folder.")
OverwriteOption = typer.Option(False, "--overwrite", help="Replace an existing run folder.")


def register(app: typer.Typer) -> None:
    app.add_typer(tune_app, name="tune")


@dataclass
class _Args:
    """The options of a training command, as given on the command line."""

    config: str
    data: str
    split: str
    out: Path | None
    base: str | None
    stance: str | None
    resume: bool
    overwrite: bool
    overrides: list[str] | None
    json_out: bool
    eval_data: str | None
    threads: int


def _run(method: str, a: _Args) -> None:
    from politune import tune
    from politune.fsutil import safe_name

    set_threads(a.threads)
    cfg = tune.load_recipe(a.config, overrides=a.overrides)
    out = (
        a.out
        if a.out is not None
        else Path("runs") / safe_name(f"{method}-{a.stance or cfg.name}", "run name")
    )
    fn = {"dpo": tune.dpo, "sft": tune.sft, "sft_dpo": tune.sft_dpo}[method]
    console.print(
        f"[bold]tune {method}[/]: {a.base or cfg.base} <- {a.data}"
        + (f" ({a.split} split)" if a.split else "")
        + f", recipe {cfg.name}, out {out}"
    )
    opts = tune.TuneOptions(
        out_dir=out,
        stance=a.stance,
        resume=a.resume,
        overwrite=a.overwrite,
        split=a.split or None,
        eval_data=a.eval_data,
    )
    res = fn(a.base, a.data, cfg, opts)
    if a.json_out:
        print_json({"adapter_dir": str(res.adapter_dir), "out_dir": str(res.out_dir), "metrics": res.metrics})
        return
    m = res.metrics
    console.print(f"adapter: {res.adapter_dir}")
    for k in (
        "step",
        "loss",
        "rewards/accuracies",
        "rewards/margins",
        "rewards/accuracies_last5_mean",
        "rewards/margins_last5_mean",
        "eval_loss",
        "eval_rewards/accuracies",
        "eval_rewards/margins",
        "tokens_per_s",
        "peak_rss_mb",
    ):
        if k in m:
            console.print(f"  {k:30s} {m[k]:.4g}" if isinstance(m[k], float) else f"  {k:30s} {m[k]}")


_TrainingGroupOption: Any = OptionGroup(
    _Args,
    dict(
        config=ConfigOption,
        data=DataOption,
        split=SplitOption,
        out=OutOption,
        base=BaseOption,
        stance=StanceOption,
        resume=ResumeOption,
        overwrite=OverwriteOption,
        overrides=OverridesOption,
        json_out=JsonOption,
        eval_data=EvalDataOption,
        threads=ThreadsOption,
    ),
)


def _training_command(method: str, help_text: str) -> Callable[..., None]:
    """The command for one method (dpo, sft, sft_dpo): the same options, a different training routine."""

    @expand_option_groups
    def cmd(args: _Args = _TrainingGroupOption) -> None:
        _run(method, args)

    cmd.__doc__ = help_text
    return cmd


tune_app.command("dpo")(
    _training_command(
        "dpo", "DPO with a fresh LoRA adapter (reference = the base with the adapter disabled)."
    )
)
tune_app.command("sft")(
    _training_command(
        "sft", "Supervised LoRA tuning on instruction data (or the chosen answers of preference pairs)."
    )
)
tune_app.command("sft-dpo")(
    _training_command(
        "sft_dpo",
        "SFT on the chosen answers, then DPO continuing the SFT adapter (reference = frozen SFT adapter).",
    )
)


@tune_app.command("merge")
def merge_cmd(
    adapter: Path = typer.Argument(..., help="Adapter folder (a run's adapter/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged full model."),
    base: str = typer.Option(
        None,
        "--base",
        "-m",
        help="Base model (default: read from the run's summary.json next to the adapter).",
    ),
    dtype: str = typer.Option(
        "float32", "--dtype", help="Dtype of the merged weights: float32 (exact), bfloat16, float16."
    ),
) -> None:
    """Merge a LoRA adapter into its base model and save full safetensors weights + tokenizer."""
    import json

    from politune import tune
    from politune.errors import PolituneError

    if base is None:
        summary = adapter.parent / "summary.json"
        if not summary.is_file():
            raise PolituneError(f"{adapter}: no summary.json next to it; pass --base")
        base = json.loads(summary.read_text())["base"]
    dest = tune.merge(base, adapter, out, dtype=dtype)
    console.print(f"merged {adapter} into {base}: {dest}")


@tune_app.command("recipes")
def recipes_cmd(json_out: bool = JsonOption) -> None:
    """List the shipped recipes with their main settings."""
    from politune import tune

    rows = []
    for name in tune.list_recipes():
        c = tune.load_recipe(name)
        rows.append(
            {
                "name": name,
                "base": c.base,
                "method": c.method,
                "loss": c.loss,
                "beta": c.beta,
                "lr": c.lr,
                "lora": f"r{c.lora.r}/a{c.lora.alpha:g}",
                "batch": f"{c.batch_size}x{c.grad_accum}",
                "max_length": c.max_length,
                "steps": c.max_steps if c.max_steps > 0 else f"{c.epochs:g} ep",
            }
        )
    if json_out:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(*rows[0].keys())
    for r in rows:
        table.add_row(*[str(v) for v in r.values()])
    console.print(table)
