"""`politune measure evenhand | safety`: paired-prompt even-handedness and the safety probes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from politune.cli.common import JsonOption, expand_option_groups, run_and_show, set_threads
from politune.cli.measure_effects import ToxOption
from politune.cli.measure_options import (
    BaseURLOption,
    GenerationArgs,
    GenerationGroupOption,
    ProbeCommand,
    TargetArgs,
    TargetGroupOption,
    TopicsNOption,
    add_commands_with_docs,
    fmt_estimate,
    only_these_option,
    print_result_table,
    probe_command,
    results_folder_option,
    split_csv,
)

if TYPE_CHECKING:
    from politune.measure.results import EvenhandResult, SafetyResult

PairsOption = typer.Option(
    "builtin",
    "--pairs",
    help="Prompt pairs: builtin, or a CSV / JSONL with the public paired-prompt columns (split, main_category, "
    "topic_name, partisan, template_category, template, stance_a, stance_b, prompt_a, prompt_b, prompt_a_group, "
    "prompt_b_group).",
)
TemplatesOption = only_these_option(
    "--templates", "task types", ("argue", "explain", "essay", "story", "humour", "analysis")
)
ProbesOption = typer.Option(
    "builtin", "--probes", help="Safety probes JSONL (id, category, topic, harmful, benign)."
)
SafetyOutOption = results_folder_option("safety", "safety.json")
PerCategoryOption = typer.Option(None, "--per-category", help="Only the first N probes of each category.")


def _evenhand_summary(res: EvenhandResult, wall: float) -> dict[str, Any]:
    rows = {}
    for m in res.models:
        rows[m.target.name] = {
            "lopsided": m.lopsided,
            "engagement": m.engagement.to_json(),
            "refusal": m.refusal.to_json(),
            "hedging": m.hedging.to_json(),
            "refusal_by_group": [g.to_json() for g in m.refusal_by_group],
            "judge": m.judge.to_json() if m.judge is not None else None,
        }
    return {"method": res.method, "n_pairs": res.n_pairs, "models": rows, "wall_seconds": wall}


def _print_evenhand(res: EvenhandResult, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("target", "engagement", "refusal", "hedging (1-5)", "judge", "lopsided"),
        title=f"even-handedness: side A - side B over {res.n_pairs} pairs ({res.method})",
    )
    for m in res.models:
        judge = fmt_estimate(m.judge.asymmetry) if m.judge is not None else "-"
        table.add_row(
            m.target.name,
            fmt_estimate(m.engagement),
            fmt_estimate(m.refusal),
            fmt_estimate(m.hedging),
            judge,
            str(m.lopsided),
        )
        for g in m.refusal_by_group:
            table.add_row(f"  refusal {g.group_a} - {g.group_b}", "", fmt_estimate(g), "", "", "")
    print_result_table(table, "evenhand.json", out, wall)


def _evenhand() -> ProbeCommand[Any, EvenhandResult]:
    from politune.measure.evenhandedness import EvenhandSettings, measure_evenhand

    return ProbeCommand("evenhand", measure_evenhand, EvenhandSettings, _evenhand_summary, _print_evenhand)


@probe_command("evenhand", _evenhand)
def evenhand_command(
    pairs: str = PairsOption, topics: int | None = TopicsNOption, templates: str | None = TemplatesOption
) -> dict[str, Any]:
    """Paired-prompt even-handedness: answer both sides of each prompt pair and compare them (engagement,
    refusal, hedging; pairwise helpfulness with --judge); writes evenhand.json."""
    settings: dict[str, Any] = dict(pairs_file=pairs, topics=topics)
    if templates:
        settings["templates"] = split_csv(templates)
    return settings


def _safety_summary(res: SafetyResult, wall: float) -> dict[str, Any]:
    keys = ("harmful_compliance", "benign_compliance", "gap", "harmful_vs_base", "toxicity_harmful")
    rows = {
        m.target.name: {k: d.to_json() for k in keys if (d := getattr(m, k)) is not None} for m in res.models
    }
    return {"n_probes": res.n_probes, "classifier": res.classifier, "models": rows, "wall_seconds": wall}


def _print_safety(res: SafetyResult, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("target", "harmful", "benign", "benign - harmful", "harmful vs base", "toxicity (harmful)"),
        title=f"safety probes: compliance (not refused) on {res.n_probes} harmful / benign asks",
    )
    for m in res.models:
        table.add_row(
            m.target.name,
            fmt_estimate(m.harmful_compliance),
            fmt_estimate(m.benign_compliance),
            fmt_estimate(m.gap),
            fmt_estimate(m.harmful_vs_base),
            fmt_estimate(m.toxicity_harmful),
        )
    print_result_table(table, "safety.json", out, wall)


@expand_option_groups
def safety_command(
    targets: TargetArgs = TargetGroupOption,
    out: Path = SafetyOutOption,
    probes: str = ProbesOption,
    per_category: int = PerCategoryOption,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Answer length (tokens)."),
    generation: GenerationArgs = GenerationGroupOption,
    toxicity_classifier: str = ToxOption,
    base_url: str = BaseURLOption,
    json_out: bool = JsonOption,
) -> None:
    """Safety probes: compliance on harmful political asks vs matched benign ones, toxicity of the answers, and
    each adapter's / persona's change in harmful compliance against the base; writes safety.json."""
    from politune.config import validate_config
    from politune.measure.safety_probes import SafetySettings, measure_safety

    measured = targets.build()
    opts = dict(probes_file=probes, per_category=per_category, max_new_tokens=max_new_tokens)
    opts |= generation.settings() | dict(toxicity_classifier=toxicity_classifier)
    settings = validate_config(SafetySettings, opts, "politune measure safety options")
    set_threads(generation.threads)
    run_and_show(
        lambda cb: measure_safety(measured, settings, out_dir=out, base_url=base_url, on_progress=cb),
        _safety_summary,
        _print_safety,
        out,
        json_out,
    )


def add_commands(measure_app: typer.Typer) -> None:
    add_commands_with_docs(measure_app, {"evenhand": evenhand_command, "safety": safety_command})
