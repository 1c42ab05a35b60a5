"""`politune measure topics | quality | toxicity | refusal | all`: judges and side-effects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from politune.cli.common import DtypeOption, JsonOption, console, print_json, run_with_progress

ModelOption = typer.Option(
    "smollm2-135m", "--model", "-m", help="Base model (registry name, local dir or hub id)."
)
AdapterOption = typer.Option(
    None, "--adapter", "-a", help="NAME=ADAPTER_DIR: also measure this LoRA adapter (repeatable)."
)
PersonaOption = typer.Option(
    None,
    "--persona",
    help="NAME=SYSTEM PROMPT: also measure the base model with this system prompt (repeatable).",
)
SystemOption = typer.Option(None, "--system", help="System prompt for every target.")
JudgeOption = typer.Option(
    None,
    "--judge",
    help="LLM judge as URL/v1/MODEL (any OpenAI-compatible server); "
    "default: $POLITUNE_JUDGE_URL + $POLITUNE_JUDGE_MODEL if set, else the offline scorer.",
)
JudgeModelOption = typer.Option(None, "--judge-model", help="Judge model name when --judge is a bare URL.")
JudgeConcOption = typer.Option(4, "--judge-concurrency", help="Judge requests in flight.")
JudgeRateOption = typer.Option(None, "--judge-rate", help="Judge requests per second at most.")
JudgeCostOption = typer.Option(
    None, "--judge-cost", help="PROMPT,COMPLETION price per 1000 tokens (cost report)."
)
OutOption = typer.Option(Path("runs/effects"), "--out", "-o", help="Output folder for the result JSON files.")
TokensOption = typer.Option(64, "--max-new-tokens", help="Answer length for topic questions (tokens).")
QATokensOption = typer.Option(40, "--qa-max-new-tokens", help="Answer length for quality questions (tokens).")
BatchOption = typer.Option(8, "--batch-size", help="Generation batch size.")
SeedOption = typer.Option(0, "--seed", help="Seed for generation and bootstrap CIs.")
DeviceOption = typer.Option("auto", "--device", help="auto | cpu | cuda | mps.")
TopicsOption = typer.Option("builtin", "--topics", help="Topic questions JSONL (id, topic, axis, question).")
QAOption = typer.Option(
    "builtin",
    "--qa",
    help="Quality questions: politune QA JSONL (question, reference) or an "
    "ELI5 file (title, answers.text/score).",
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


def _judge(
    judge: str | None, judge_model: str | None, concurrency: int, rate: float | None, cost: str | None
):
    import os

    from politune.client import ClientOptions
    from politune.errors import PolituneError
    from politune.measure import Judge, parse_judge_spec

    if judge is None and not (
        os.environ.get("POLITUNE_JUDGE_URL") and os.environ.get("POLITUNE_JUDGE_MODEL")
    ):
        return None
    url, model = parse_judge_spec(judge, judge_model) if judge else (None, None)
    cost_pair = None
    if cost:
        try:
            p, c = (float(x) for x in cost.split(","))
        except ValueError:
            raise PolituneError(
                f"--judge-cost {cost!r}: expected PROMPT,COMPLETION prices per 1k tokens"
            ) from None
        cost_pair = (p, c)
    return Judge(
        url, model, client=ClientOptions(concurrency=concurrency, rate_limit=rate, cost_per_1k=cost_pair)
    )


@dataclass
class _Args:
    """The options of a side-effect command, as given on the command line."""

    model: str
    adapter: list[str] | None
    persona: list[str] | None
    system: str | None
    judge: str | None
    judge_model: str | None
    judge_concurrency: int
    judge_rate: float | None
    judge_cost: str | None
    out: Path
    max_new_tokens: int
    qa_max_new_tokens: int
    batch_size: int
    seed: int
    device: str
    dtype: str
    topics: str
    qa: str
    qa_limit: int | None
    ppl_text: str
    toxicity_classifier: str
    threshold: float
    json_out: bool


def _run(measures: tuple[str, ...], a: _Args) -> None:
    from politune.config import validate_config
    from politune.fsutil import atomic_write_json
    from politune.measure import EffectsSettings, build_targets, measure_effects

    targets = build_targets(a.model, a.adapter, a.persona, a.system)
    settings = validate_config(
        EffectsSettings,
        dict(
            topics_file=a.topics,
            qa_file=a.qa,
            qa_limit=a.qa_limit,
            ppl_file=a.ppl_text,
            max_new_tokens=a.max_new_tokens,
            qa_max_new_tokens=a.qa_max_new_tokens,
            batch_size=a.batch_size,
            seed=a.seed,
            device=a.device,
            dtype=a.dtype,
            toxicity_classifier=a.toxicity_classifier,
            toxicity_threshold=a.threshold,
        ),
        "politune measure options",
    )
    j = _judge(a.judge, a.judge_model, a.judge_concurrency, a.judge_rate, a.judge_cost)
    out = a.out
    results, wall = run_with_progress(
        lambda cb: measure_effects(targets, measures, out_dir=out, judge=j, settings=settings, on_progress=cb)
    )
    summary = _summary(results)
    summary["wall_seconds"] = wall
    if j is not None:
        summary["judge"] = j.report()
    atomic_write_json(Path(out) / "effects-summary.json", summary)
    if a.json_out:
        print_json(summary)
        return
    _print(summary, out)


def _fmt(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _summary(results: dict) -> dict:
    """The typed results -> effects-summary.json: one row per target across the measures."""
    from politune.measure.results import QualityResult, RefusalResult, TopicsResult, ToxicityResult

    out: dict = {"measures": sorted(results), "models": {}}

    def row(target) -> dict:
        return out["models"].setdefault(target.name, {})

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


def _print(summary: dict, out) -> None:
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


def effects_command(
    ctx: typer.Context,
    model: str = ModelOption,
    adapter: list[str] = AdapterOption,
    persona: list[str] = PersonaOption,
    system: str = SystemOption,
    judge: str = JudgeOption,
    judge_model: str = JudgeModelOption,
    judge_concurrency: int = JudgeConcOption,
    judge_rate: float = JudgeRateOption,
    judge_cost: str = JudgeCostOption,
    out: Path = OutOption,
    max_new_tokens: int = TokensOption,
    qa_max_new_tokens: int = QATokensOption,
    batch_size: int = BatchOption,
    seed: int = SeedOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    topics: str = TopicsOption,
    qa: str = QAOption,
    qa_limit: int = QALimitOption,
    ppl_text: str = PplOption,
    toxicity_classifier: str = ToxOption,
    threshold: float = ThreshOption,
    json_out: bool = JsonOption,
) -> None:
    """The side-effect commands (one per entry of COMMANDS, which picks the measures by the command's name)."""
    measures = COMMANDS[ctx.info_name or "all"][0]
    _run(
        measures,
        _Args(
            model,
            adapter,
            persona,
            system,
            judge,
            judge_model,
            judge_concurrency,
            judge_rate,
            judge_cost,
            out,
            max_new_tokens,
            qa_max_new_tokens,
            batch_size,
            seed,
            device,
            dtype,
            topics,
            qa,
            qa_limit,
            ppl_text,
            toxicity_classifier,
            threshold,
            json_out,
        ),
    )
