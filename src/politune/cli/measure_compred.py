"""`politune measure winrate | reward-accuracy`: the ComPreD-style measures (docs/compred.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from politune.cli.common import DeviceOption, JsonOption, run_and_show
from politune.cli.measure_options import (
    AdapterOption,
    ModelOption,
    ProbeCommand,
    SeedOption,
    add_commands_with_docs,
    fmt_estimate,
    print_result_table,
    probe_command,
    results_folder_option,
)

if TYPE_CHECKING:
    from politune.measure.results import RewardAccuracyResult, WinrateResult

StanceOption = typer.Option(
    None,
    "--stance",
    help="NAME=left|right: the stance of a target whose adapter's model card does not record one (repeatable).",
)
RewardOutOption = results_folder_option("reward-accuracy", "reward_accuracy.json")
SplitOption = typer.Option(
    "heldout", "--split", help="Split of the built-in set: heldout (8 topics never trained on), train or all."
)


def _split(split: str) -> str | None:
    return None if split == "all" else split


def _winrate_summary(res: WinrateResult, wall: float) -> dict[str, Any]:
    rows = [
        {
            "a": c.a,
            "b": c.b,
            "community": c.community,
            "win_rate": c.win_rate.to_json(),
            "wins": c.wins,
            "ties": c.ties,
            "losses": c.losses,
            "first_slot": c.first_slot.to_json(),
            "first_slot_p": c.first_slot_p,
            "position_bias": c.position_bias,
        }
        for c in res.comparisons
    ]
    return {"method": res.method, "n_prompts": res.n_prompts, "comparisons": rows, "wall_seconds": wall}


def _print_winrate(res: WinrateResult, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *(
            "A vs B",
            "community",
            "win-rate of A",
            "wins / ties / losses",
            "first-slot share",
            "position bias",
        ),
        title=f"win-rate over {res.n_prompts} prompts ({res.method})",
    )
    for c in res.comparisons:
        table.add_row(
            f"{c.a} vs {c.b}",
            c.community,
            fmt_estimate(c.win_rate),
            f"{c.wins} / {c.ties} / {c.losses}",
            fmt_estimate(c.first_slot),
            str(c.position_bias),
        )
    print_result_table(table, "winrate.json", out, wall, "docs/compred.md")


def _winrate() -> ProbeCommand[Any, WinrateResult]:
    from politune.measure.winrate import WinrateSettings, measure_winrate

    return ProbeCommand("winrate", measure_winrate, WinrateSettings, _winrate_summary, _print_winrate)


@probe_command("winrate", _winrate)
def winrate_command(
    prompts: str = typer.Option(
        "builtin",
        "--prompts",
        help="builtin (the ideology set's prompts), a preference file (its prompts), a .txt file (one prompt a "
        "line) or a JSONL file of {prompt, id?, topic?, axis?}.",
    ),
    split: str = SplitOption,
    limit: int = typer.Option(None, "--limit", help="At most N prompts, taken in turn from each topic."),
    community: list[str] = typer.Option(
        None,
        "--community",
        help="Who is asked about: left, right, or NAME=left|right, e.g. 'r/economics readers=right' (the side "
        "is what the offline judge needs; an LLM judge needs only NAME). Repeatable; default: model A's stance.",
    ),
    compare: list[str] = typer.Option(
        None, "--compare", help="A:B target names to compare (repeatable); default: each target vs base."
    ),
    stance: list[str] = StanceOption,
    margin: float = typer.Option(
        0.1, "--margin", help="Offline judge: a tie when the two answers' leans differ by less."
    ),
) -> dict[str, Any]:
    """ComPreD-style win-rate: every target answers the same prompts; a judge says which of two models' answers
    a named community would prefer (order randomised, ties counted), with CIs and a position-bias check; writes
    winrate.json. Offline judge by default (the stance scorer: lean toward the community's side)."""
    from politune.measure.targets import parse_named

    settings: dict[str, Any] = dict(
        prompts_file=prompts, split=_split(split), limit=limit, communities=community or []
    )
    return settings | dict(compare=compare or [], stances=parse_named(stance, "stance"), margin=margin)


def _reward_summary(res: RewardAccuracyResult, wall: float) -> dict[str, Any]:
    rows = {
        m.target.name: {
            "pairs": m.pairs_source,
            "stance": m.stance,
            "beta": m.beta,
            "accuracy": m.accuracy.to_json(),
            "margin": m.margin.to_json(),
            "by": {f: {v: g.to_json() for v, g in groups.items()} for f, groups in m.by.items()},
        }
        for m in res.models
    }
    return {"reference": res.reference, "models": rows, "wall_seconds": wall}


def _print_reward(res: RewardAccuracyResult, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("adapter", "pairs", "accuracy", "mean margin", "beta"),
        title="implicit reward accuracy on held-out pairs (reference: the base model)",
    )
    for m in res.models:
        table.add_row(
            m.target.name,
            m.pairs_source or "",
            fmt_estimate(m.accuracy),
            fmt_estimate(m.margin),
            f"{m.beta:g}",
        )
        for v, g in m.by.get("axis", {}).items():
            table.add_row(f"  axis {v}", "", fmt_estimate(g.accuracy), fmt_estimate(g.margin), "")
    print_result_table(table, "reward_accuracy.json", out, wall, "docs/compred.md")


def reward_accuracy_command(
    model: str = ModelOption,
    adapter: list[str] = AdapterOption,
    out: Path = RewardOutOption,
    pairs: str = typer.Option(
        None,
        "--pairs",
        help="Preference pairs (any format politune data reads); default: the built-in held-out pairs, the "
        "side of each adapter's stance.",
    ),
    split: str = SplitOption,
    limit: int = typer.Option(None, "--limit", help="At most N pairs, taken in turn from each topic."),
    stance: list[str] = StanceOption,
    beta: float = typer.Option(None, "--beta", help="DPO beta; default: the one in each adapter's card."),
    max_length: int = typer.Option(512, "--max-length", help="Tokens of prompt + answer (cut at the end)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Pairs per forward pass."),
    seed: int = SeedOption,
    device: str = DeviceOption,
    dtype: str = typer.Option(
        "float32",
        "--dtype",
        help="float32 (default: bf16 rounding blurs the small log-prob differences) or auto.",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Implicit reward accuracy of DPO adapters: on held-out preference pairs, the share where
    beta * (log pi - log pi_base) ranks the chosen answer above the rejected one, and the mean margin, with CIs,
    per topic / axis / community; writes reward_accuracy.json."""
    from politune.config import validate_config
    from politune.errors import PolituneError
    from politune.measure.reward_accuracy import RewardSettings, measure_reward_accuracy
    from politune.measure.targets import build_targets, parse_named

    if not adapter:
        raise PolituneError("reward-accuracy: no adapter: pass --adapter NAME=DIR (repeatable)")
    targets = build_targets(model, adapter, include_base=False)
    opts: dict[str, Any] = dict(pairs_file=pairs, split=_split(split), limit=limit)
    opts["stances"] = parse_named(stance, "stance")
    opts |= dict(
        beta=beta, max_length=max_length, batch_size=batch_size, seed=seed, device=device, dtype=dtype
    )
    settings = validate_config(RewardSettings, opts, "politune measure reward-accuracy options")
    run_and_show(
        lambda cb: measure_reward_accuracy(targets, settings, out_dir=out, on_progress=cb),
        _reward_summary,
        _print_reward,
        out,
        json_out,
    )


def add_commands(measure_app: typer.Typer) -> None:
    add_commands_with_docs(
        measure_app, {"winrate": winrate_command, "reward-accuracy": reward_accuracy_command}
    )
