"""`politune measure topics | quality | toxicity | refusal | all`: judges and side-effects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from politune.cli.common import (
    JsonOption,
    console,
    expand_option_groups,
    print_json,
    run_with_progress,
    set_threads,
)
from politune.cli.measure_options import (
    GenerationArgs,
    GenerationGroupOption,
    JudgeArgs,
    JudgeGroupOption,
    TargetArgs,
    TargetGroupOption,
)

if TYPE_CHECKING:
    from politune.measure import EffectsSettings, Judge, Target
    from politune.measure.results import Result

OutOption = typer.Option(Path("runs/effects"), "--out", "-o", help="Output folder for the result JSON files.")
TokensOption = typer.Option(64, "--max-new-tokens", help="Answer length for topic questions (tokens).")
QATokensOption = typer.Option(40, "--qa-max-new-tokens", help="Answer length for quality questions (tokens).")
TopicsOption = typer.Option("builtin", "--topics", help="Topic questions JSONL (id, topic, axis, question).")
QAOption = typer.Option(
    "builtin",
    "--qa",
    help="Quality questions: a QA JSONL (question, reference) or ELI5 (title, answers.text/score).",
)
QALimitOption = typer.Option(None, "--qa-limit", help="Use only the first N quality questions.")
PplOption = typer.Option(
    "builtin", "--ppl-text", help="Neutral text file for perplexity (paragraph = passage)."
)
ToxOption = typer.Option(
    "alt-profanity-check",
    "--toxicity-classifier",
    help="alt-profanity-check or hf:LOCAL_DIR (a local Hugging Face classifier).",
)
ThreshOption = typer.Option(0.5, "--threshold", help="Toxicity threshold for share_above.")


def _run(
    measures: tuple[str, ...],
    measured: list[Target],
    j: Judge | None,
    settings: EffectsSettings,
    out: Path,
    json_out: bool,
) -> None:
    """Measure, write effects-summary.json, print it (JSON with --json, else a table)."""
    from politune.fsutil import atomic_write_json
    from politune.measure import measure_effects

    results, wall = run_with_progress(
        lambda cb: measure_effects(
            measured, measures, out_dir=out, judge=j, settings=settings, on_progress=cb
        )
    )
    summary = _summary(results)
    summary["wall_seconds"] = wall
    if j is not None:
        summary["judge"] = j.report()
    atomic_write_json(Path(out) / "effects-summary.json", summary)
    if json_out:
        print_json(summary)
        return
    _print(summary, out)


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _ci(ci: list[float | None] | None) -> str:
    return "" if not ci or ci[0] is None else f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _summary(results: dict[str, Result]) -> dict[str, Any]:
    """The typed results -> effects-summary.json: one row per target across the measures."""
    from politune.measure.results import (
        QualityResult,
        RefusalResult,
        TargetInfo,
        TopicsResult,
        ToxicityResult,
    )

    models: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"measures": sorted(results), "models": models}

    def row(target: TargetInfo) -> dict[str, Any]:
        return models.setdefault(target.name, {})

    for res in results.values():
        if isinstance(res, TopicsResult):
            out["scorer"] = {"name": res.scorer_name, "validation": res.scorer_validation}
            for m in res.models:
                row(m.target)["topic_lean"] = {
                    "mean": m.mean,
                    "ci": m.ci.model_dump(),
                    "axes": {a: v.to_json() for a, v in m.axis_means.items()},
                }
        elif isinstance(res, QualityResult):
            for q in res.models:
                d = q.to_json()
                row(q.target).update({k: d.get(k) for k in ("rouge_l", "perplexity", "delta_vs_base")})
        elif isinstance(res, ToxicityResult):
            for t in res.models:
                row(t.target)["toxicity"] = {
                    "mean": t.mean,
                    "ci": t.ci.model_dump(),
                    "share_above": t.share_above,
                }
        elif isinstance(res, RefusalResult):
            for r in res.models:
                row(r.target)["refusal"] = {"rate": r.rate, "ci": r.ci.model_dump(), "n": r.n}
    return out


def _print(summary: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    cols = ["target", "topic lean", "econ", "social", "ROUGE-L", "perplexity", "toxicity", "refusal"]
    table = Table(*cols, title="side effects")
    for name, row in summary["models"].items():
        tl = row.get("topic_lean") or {}
        axes = tl.get("axes") or {}
        table.add_row(
            name,
            _fmt(tl.get("mean")) + _ci(tl.get("ci")) if tl else "-",
            _fmt((axes.get("economic") or {}).get("mean")),
            _fmt((axes.get("social") or {}).get("mean")),
            _fmt((row.get("rouge_l") or {}).get("mean")),
            _fmt((row.get("perplexity") or {}).get("mean"), 2),
            _fmt((row.get("toxicity") or {}).get("mean")),
            _fmt((row.get("refusal") or {}).get("rate")),
        )
    console.print(table)
    if "scorer" in summary:
        from politune.measure.validate_judge import validation_note

        sc = summary["scorer"]
        console.print("topic " + validation_note(sc["name"], sc["validation"]))
    if "judge" in summary:
        j = summary["judge"]
        console.print(
            f"judge {j['model']}: {j['items']} items, {j['cache_hits']} cached, {j['missing']} missing, "
            f"{j['prompt_tokens']}+{j['completion_tokens']} tokens, cost {j['cost']}, {j['seconds']} s"
        )
    console.print(
        f"wrote {', '.join(m + '.json' for m in summary['measures'])} to {out} ({summary['wall_seconds']} s)"
    )


# command name -> (measures, help)
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "topics": (
        ("topics",),
        "Answer open political questions on held-out topics and score each answer's lean "
        "(offline scorer, or --judge); writes topics.json.",
    ),
    "quality": (
        ("quality",),
        "Quality retention: ROUGE-L vs reference answers and perplexity on neutral text, "
        "with the change vs base; writes quality.json.",
    ),
    "toxicity": (
        ("toxicity",),
        "Toxicity of the answers (alt-profanity-check or a local HF classifier); writes toxicity.json.",
    ),
    "refusal": (
        ("refusal",),
        "Refusal rate on political questions (keyword patterns, plus the judge when "
        "configured); writes refusal.json.",
    ),
    "all": (
        ("topics", "quality", "toxicity", "refusal"),
        "Topics, quality, toxicity and refusal from one round of answers; writes all four result files.",
    ),
}


def add_commands(measure_app: typer.Typer) -> None:
    """Add this part's commands to the `measure` sub-app."""
    for name, (_, help_text) in COMMANDS.items():
        measure_app.command(name, help=help_text)(effects_command)


@expand_option_groups
def effects_command(
    ctx: typer.Context,
    targets: TargetArgs = TargetGroupOption,
    judge: JudgeArgs = JudgeGroupOption,
    out: Path = OutOption,
    max_new_tokens: int = TokensOption,
    qa_max_new_tokens: int = QATokensOption,
    generation: GenerationArgs = GenerationGroupOption,
    topics: str = TopicsOption,
    qa: str = QAOption,
    qa_limit: int = QALimitOption,
    ppl_text: str = PplOption,
    toxicity_classifier: str = ToxOption,
    threshold: float = ThreshOption,
    json_out: bool = JsonOption,
) -> None:
    """The side-effect commands (one per entry of COMMANDS, which picks the measures by the command's name)."""
    from politune.config import validate_config
    from politune.measure import EffectsSettings

    measures = COMMANDS[ctx.info_name or "all"][0]
    measured = targets.build()
    opts = dict(topics_file=topics, qa_file=qa, qa_limit=qa_limit, ppl_file=ppl_text)
    opts |= dict(max_new_tokens=max_new_tokens, qa_max_new_tokens=qa_max_new_tokens) | generation.settings()
    opts |= dict(toxicity_classifier=toxicity_classifier, toxicity_threshold=threshold)
    settings = validate_config(EffectsSettings, opts, "politune measure options")
    set_threads(generation.threads)
    _run(measures, measured, judge.build(), settings, out, json_out)
