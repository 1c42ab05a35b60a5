"""`politune measure evenhand | safety`: paired-prompt even-handedness and the safety probes."""

from __future__ import annotations

from pathlib import Path

import typer

from politune.cli.common import JsonOption, console, run_and_show
from politune.cli.measure_effects import (
    AdapterOption,
    BatchOption,
    DeviceOption,
    DtypeOption,
    JudgeConcOption,
    JudgeCostOption,
    JudgeModelOption,
    JudgeOption,
    JudgeRateOption,
    ModelOption,
    PersonaOption,
    SeedOption,
    SystemOption,
    ToxOption,
    _judge,
)

BaseURLOption = typer.Option(
    None,
    "--base-url",
    help="Answer through an OpenAI-compatible server at this URL (targets' model = the served name) "
    "instead of loading the model.",
)
PairsOption = typer.Option(
    "builtin",
    "--pairs",
    help="Prompt pairs: builtin, or a CSV / JSONL with the public paired-prompt columns (split, main_category, "
    "topic_name, partisan, template_category, template, stance_a, stance_b, prompt_a, prompt_b, prompt_a_group, "
    "prompt_b_group).",
)
TopicsNOption = typer.Option(
    None, "--topics", help="Only the first N topics (alternating economic / social): a cheap subset."
)
TemplatesOption = typer.Option(
    None,
    "--templates",
    help="Only these task types, comma-separated (argue,explain,essay,story,humour,analysis).",
)
ProbesOption = typer.Option(
    "builtin", "--probes", help="Safety probes JSONL (id, category, topic, harmful, benign)."
)
PerCategoryOption = typer.Option(None, "--per-category", help="Only the first N probes of each category.")


def _fmt(d) -> str:
    """A SideAsymmetry / DiffCI / MeanCI as ``value [lo, hi]``."""
    v = getattr(d, "diff", None) if hasattr(d, "diff") else getattr(d, "mean", None)
    if d is None or v is None:
        return "-"
    return f"{v:+.3f} {d.ci.fmt(3)}" if hasattr(d, "diff") else f"{v:.3f} {d.ci.fmt(3)}"


def _print_table(table, result_file: str, out: Path, wall: float, doc: str = "docs/probes.md") -> None:
    console.print(table)
    console.print(f"wrote {result_file} to {out} ({wall} s); what each number can and cannot tell: {doc}")


def _evenhand_summary(res, wall: float) -> dict:
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


def _print_evenhand(res, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("target", "engagement", "refusal", "hedging (1-5)", "judge", "lopsided"),
        title=f"even-handedness: side A - side B over {res.n_pairs} pairs ({res.method})",
    )
    for m in res.models:
        judge = _fmt(m.judge.asymmetry) if m.judge is not None else "-"
        table.add_row(
            m.target.name, _fmt(m.engagement), _fmt(m.refusal), _fmt(m.hedging), judge, str(m.lopsided)
        )
        for g in m.refusal_by_group:
            table.add_row(f"  refusal {g.group_a} - {g.group_b}", "", _fmt(g), "", "", "")
    _print_table(table, "evenhand.json", out, wall)


def evenhand_command(
    model: str = ModelOption,
    adapter: list[str] = AdapterOption,
    persona: list[str] = PersonaOption,
    system: str = SystemOption,
    judge: str = JudgeOption,
    judge_model: str = JudgeModelOption,
    judge_concurrency: int = JudgeConcOption,
    judge_rate: float = JudgeRateOption,
    judge_cost: str = JudgeCostOption,
    out: Path = typer.Option(Path("runs/evenhand"), "--out", "-o", help="Output folder (evenhand.json)."),
    pairs: str = PairsOption,
    topics: int = TopicsNOption,
    templates: str = TemplatesOption,
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", help="Answer length (tokens)."),
    batch_size: int = BatchOption,
    seed: int = SeedOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    base_url: str = BaseURLOption,
    json_out: bool = JsonOption,
) -> None:
    """Paired-prompt even-handedness: answer both sides of each prompt pair and compare them (engagement,
    refusal, hedging; pairwise helpfulness with --judge); writes evenhand.json."""
    from politune.config import validate_config
    from politune.measure.evenhandedness import EvenhandSettings, measure_evenhand
    from politune.measure.targets import build_targets

    targets = build_targets(model, adapter, persona, system)
    opts = dict(pairs_file=pairs, topics=topics, max_new_tokens=max_new_tokens, batch_size=batch_size)
    opts |= dict(seed=seed, device=device, dtype=dtype)
    if templates:
        opts["templates"] = [t.strip() for t in templates.split(",") if t.strip()]
    settings = validate_config(EvenhandSettings, opts, "politune measure evenhand options")
    j = _judge(judge, judge_model, judge_concurrency, judge_rate, judge_cost)
    run_and_show(
        lambda cb: measure_evenhand(targets, out, j, settings, base_url=base_url, on_progress=cb),
        _evenhand_summary,
        _print_evenhand,
        out,
        json_out,
    )


def _safety_summary(res, wall: float) -> dict:
    keys = ("harmful_compliance", "benign_compliance", "gap", "harmful_vs_base", "toxicity_harmful")
    rows = {
        m.target.name: {k: d.to_json() for k in keys if (d := getattr(m, k)) is not None} for m in res.models
    }
    return {"n_probes": res.n_probes, "classifier": res.classifier, "models": rows, "wall_seconds": wall}


def _print_safety(res, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("target", "harmful", "benign", "benign - harmful", "harmful vs base", "toxicity (harmful)"),
        title=f"safety probes: compliance (not refused) on {res.n_probes} harmful / benign asks",
    )
    for m in res.models:
        table.add_row(
            m.target.name,
            _fmt(m.harmful_compliance),
            _fmt(m.benign_compliance),
            _fmt(m.gap),
            _fmt(m.harmful_vs_base),
            _fmt(m.toxicity_harmful),
        )
    _print_table(table, "safety.json", out, wall)


def safety_command(
    model: str = ModelOption,
    adapter: list[str] = AdapterOption,
    persona: list[str] = PersonaOption,
    system: str = SystemOption,
    out: Path = typer.Option(Path("runs/safety"), "--out", "-o", help="Output folder (safety.json)."),
    probes: str = ProbesOption,
    per_category: int = PerCategoryOption,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Answer length (tokens)."),
    batch_size: int = BatchOption,
    seed: int = SeedOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    toxicity_classifier: str = ToxOption,
    base_url: str = BaseURLOption,
    json_out: bool = JsonOption,
) -> None:
    """Safety probes: compliance on harmful political asks vs matched benign ones, toxicity of the answers, and
    each adapter's / persona's change in harmful compliance against the base; writes safety.json."""
    from politune.config import validate_config
    from politune.measure.safety_probes import SafetySettings, measure_safety
    from politune.measure.targets import build_targets

    targets = build_targets(model, adapter, persona, system)
    opts = dict(probes_file=probes, per_category=per_category, max_new_tokens=max_new_tokens)
    opts |= dict(
        batch_size=batch_size, seed=seed, device=device, dtype=dtype, toxicity_classifier=toxicity_classifier
    )
    settings = validate_config(SafetySettings, opts, "politune measure safety options")
    run_and_show(
        lambda cb: measure_safety(targets, out, settings, base_url=base_url, on_progress=cb),
        _safety_summary,
        _print_safety,
        out,
        json_out,
    )


def add_commands(measure_app: typer.Typer) -> None:
    measure_app.command("evenhand", help=" ".join((evenhand_command.__doc__ or "").split()))(evenhand_command)
    measure_app.command("safety", help=" ".join((safety_command.__doc__ or "").split()))(safety_command)
