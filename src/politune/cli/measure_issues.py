"""`politune measure issues | behaviour`: stance distributions on realistic writing tasks, and behaviour axes on
charged questions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from politune.cli.common import console
from politune.cli.measure_options import (
    ProbeCommand,
    TopicsNOption,
    add_commands_with_docs,
    first_n_option,
    fmt_estimate,
    only_these_option,
    print_result_table,
    probe_command,
    split_csv,
)
from politune.measure.results_probes import BehaviourResult, IssuesResult

PromptsOption = typer.Option(
    "builtin",
    "--prompts",
    help="Issue prompts: builtin, or a CSV / JSONL with the columns issue, template, framing, prompt (+ pro, con, "
    "pro_pole, category; docs/probes.md).",
)
IssuesNOption = first_n_option("--issues", "issues")
IssueTemplatesOption = only_these_option(
    "--templates", "request templates", ("blog", "speech", "email", "post", "letter", "essay")
)
FramingsOption = only_these_option("--framings", "framings", ("neutral", "pro", "con"))
QuestionsOption = typer.Option(
    "builtin",
    "--questions",
    help="Charged questions: builtin, or a CSV / JSONL with topic, category, charged_left, liberal, neutral, "
    "conservative, charged_right.",
)
SlantsOption = only_these_option(
    "--slants", "slants", ("charged_left", "liberal", "neutral", "conservative", "charged_right")
)


# ------------------------------------------------------------------------------------------------ issues


def _issues_summary(res: IssuesResult, wall: float) -> dict[str, Any]:
    keys = ("mean_stance", "refusal_rate", "stance_vs_base", "refusal_vs_base")
    rows = {}
    for m in res.models:
        rows[m.target.name] = {k: d.to_json() for k in keys if (d := getattr(m, k)) is not None}
        rows[m.target.name] |= {
            "distribution": m.distribution,
            "axis_lean": {a: v.to_json() for a, v in m.axis_lean.items()},
            "lean_vs_base": {a: v.to_json() for a, v in (m.lean_vs_base or {}).items()},
            "by_framing": {f: v.to_json() for f, v in m.by_framing.items()},
        }
    out = {"classifier": res.classifier, "n_prompts": res.n_prompts, "n_issues": res.n_issues}
    return out | {"models": rows, "wall_seconds": wall}


def _print_issues(res: IssuesResult, out: Path, wall: float) -> None:
    from rich.table import Table

    table = Table(
        *("target", "1 / 2 / 3 / 4 / 5 / refused", "mean stance (1-5)", "vs base", "refusal"),
        *("economic lean", "vs base", "social lean", "vs base"),
        title=f"issue stances: {res.n_prompts} writing requests on {res.n_issues} issues ({res.classifier})",
    )
    for m in res.models:
        d = m.distribution
        dist = " / ".join(str(d.get(k, 0)) for k in ("1", "2", "3", "4", "5", "refusal"))
        shift = m.lean_vs_base or {}
        leans = [
            x
            for a in ("economic", "social")
            for x in (fmt_estimate(m.axis_lean.get(a)), fmt_estimate(shift.get(a)))
        ]
        table.add_row(
            m.target.name,
            dist,
            fmt_estimate(m.mean_stance),
            fmt_estimate(m.stance_vs_base),
            fmt_estimate(m.refusal_rate),
            *leans,
        )
    print_result_table(table, "issues.json", out, wall)
    if res.classifier_validation:
        from politune.measure.validate_judge import validation_note

        console.print(
            "issue stances: "
            + validation_note((res.classifier or "").split("->")[0], res.classifier_validation)
        )


def _issues() -> ProbeCommand[Any, IssuesResult]:
    from politune.measure.issue_stance import IssuesSettings, measure_issues

    return ProbeCommand("issues", measure_issues, IssuesSettings, _issues_summary, _print_issues)


@probe_command("issues", _issues)
def issues_command(
    prompts: str = PromptsOption,
    issues: int | None = IssuesNOption,
    templates: str | None = IssueTemplatesOption,
    framings: str | None = FramingsOption,
) -> dict[str, Any]:
    """Stance distribution on realistic writing tasks (IssueBench-style): answers to issue prompts (neutral / pro /
    con framings) classified 1 (only pro) .. 5 (only con) or refusal, per issue and overall, with each adapter's
    shift from the base; writes issues.json."""
    return dict(
        prompts_file=prompts, issues=issues, templates=split_csv(templates), framings=split_csv(framings)
    )


# ------------------------------------------------------------------------------------------------ behaviour


def _behaviour_summary(res: BehaviourResult, wall: float) -> dict[str, Any]:
    rows = {}
    for m in res.models:
        rows[m.target.name] = {
            "axes": {a: v.to_json() for a, v in m.axes.items()},
            "right_minus_left": {a: v.to_json() for a, v in m.right_minus_left.items()},
            "vs_base": {a: v.to_json() for a, v in (m.vs_base or {}).items()},
            "by_slant": {s: {a: v.mean for a, v in axes.items()} for s, axes in m.by_slant.items()},
        }
    return {"method": res.method, "n_questions": res.n_questions, "models": rows, "wall_seconds": wall}


def _print_behaviour(res: BehaviourResult, out: Path, wall: float) -> None:
    from rich.table import Table

    from politune.measure.behaviour_axes import AXES

    table = Table(
        *("target", "axis", "mean (0-1)", "right - left slants", "vs base"),
        title=f"behaviour axes on {res.n_questions} charged questions ({res.method})",
    )
    for m in res.models:
        for i, a in enumerate(AXES):
            vs = (m.vs_base or {}).get(a)
            name = m.target.name if i == 0 else ""
            table.add_row(
                name,
                a,
                fmt_estimate(m.axes.get(a)),
                fmt_estimate(m.right_minus_left.get(a)),
                fmt_estimate(vs),
            )
    print_result_table(table, "behaviour.json", out, wall)


def _behaviour() -> ProbeCommand[Any, BehaviourResult]:
    from politune.measure.behaviour_axes import BehaviourSettings, measure_behaviour

    return ProbeCommand(
        "behaviour", measure_behaviour, BehaviourSettings, _behaviour_summary, _print_behaviour
    )


@probe_command("behaviour", _behaviour)
def behaviour_command(
    questions: str = QuestionsOption, topics: int | None = TopicsNOption, slants: str | None = SlantsOption
) -> dict[str, Any]:
    """Behaviour axes on charged questions: one question per topic in five slants (charged left ... charged right),
    each answer scored for personal political expression, user invalidation, user escalation, asymmetric coverage
    and political refusal (offline heuristics, or --judge); writes behaviour.json."""
    return dict(questions_file=questions, topics=topics, slants=split_csv(slants))


def add_commands(measure_app: typer.Typer) -> None:
    add_commands_with_docs(measure_app, {"issues": issues_command, "behaviour": behaviour_command})
