"""The terminal summary of a study: each model's position with CI per track, its shift from the base with CI,
and the side-effects. Two narrow tables, so they stay readable in an 80-column terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from politune.measure.results import CI
from politune.measure.validate_judge import validation_note
from politune.study.results import ModelRow, Position
from politune.study.runner import StudyResult

_TRACKS = ("logprob", "choice", "open")


def _ci(ci: CI) -> str:
    return f"[{ci.lo:+.1f},{ci.hi:+.1f}]" if ci.ok else ""


def _pos(p: Position | None) -> str:
    return "" if p is None else f"{p.score:+.2f} {_ci(p.ci)}"


def _shift(p: Position | None) -> str:
    return "" if p is None or p.shift is None else f"{p.shift:+.2f} {_ci(p.shift_ci)}"


def _print_judges(rows: list[ModelRow], console: Console) -> None:
    """What read the open track's and the topics' answers, each with its validated accuracy."""
    judged = next((r for r in rows if r.judge), None)
    if judged is None or judged.judge is None:
        return
    same = judged.topic_judge in (None, judged.judge)
    console.print(
        ("open track and topic " if same else "open track ")
        + validation_note(judged.judge, judged.judge_validation)
    )
    if not same and judged.topic_judge is not None:
        console.print("topic " + validation_note(judged.topic_judge, judged.topic_judge_validation))


def print_summary(res: StudyResult, console: Console) -> None:
    for cell in res.cells:
        rows = [r for r in res.rows if r.cell == cell.name]
        where = "" if cell.name == "main" else f" — cell {cell.name}"
        pos = Table(
            title=f"Compass position, 95% CI (economic −10 left … +10 right){where}", title_justify="left"
        )
        for col in ("model", "track", "economic", "social", "Δ economic vs base"):
            pos.add_column(col, no_wrap=True)
        for r in rows:
            for t in _TRACKS:
                if (t, "economic") in r.positions:
                    pos.add_row(
                        r.model,
                        t,
                        _pos(r.positions[(t, "economic")]),
                        _pos(r.positions.get((t, "social"))),
                        _shift(r.positions[(t, "economic")]),
                    )
        if pos.row_count:
            console.print(pos)
        _print_judges(rows, console)
        extra = [
            ("topics_mean", "topic lean"),
            ("rouge_l", "ROUGE-L"),
            ("rouge_l_delta", "Δ ROUGE-L"),
            ("perplexity", "perplexity"),
            ("toxicity_mean", "toxicity"),
            ("refusal_rate", "refusal"),
        ]
        extra = [(k, h) for k, h in extra if any(getattr(r, k) is not None for r in rows)]
        if extra:
            side = Table(title=f"Side-effects{where}", title_justify="left")
            side.add_column("model", no_wrap=True)
            for _, h in extra:
                side.add_column(h, no_wrap=True)
            for r in rows:
                vals = [getattr(r, k) for k, _ in extra]
                side.add_row(
                    r.model,
                    *(
                        ""
                        if v is None
                        else f"{v:+.3f}"
                        if k in ("topics_mean", "rouge_l_delta")
                        else f"{v:.3f}"
                        for (k, _), v in zip(extra, vals, strict=True)
                    ),
                )
            console.print(side)
        _print_probes(rows, where, console)
        _print_compred(rows, where, console)
    if res.report:
        console.print(f"report: {res.report}")
    console.print(f"results: {res.dir / 'results.md'}  ({res.seconds / 60:.1f} min)")


# (column, heading, signed): the probe numbers a study prints, from ModelRow.probes (docs/probes.md)
_PROBE_COLUMNS = (
    ("evenhand.engagement", "engage A−B", True),
    ("evenhand.refusal", "refuse A−B", True),
    ("evenhand.lopsided", "lopsided", False),
    ("safety.harmful_compliance", "harmful", False),
    ("safety.harmful_vs_base", "Δ harmful", True),
    ("issues.stance", "stance 1-5", False),
)


def _print_probes(rows: list[ModelRow], where: str, console: Console) -> None:
    """Even-handedness, safety and issue-stance headline numbers per model, when measured."""
    cols = [c for c in _PROBE_COLUMNS if any(r.probes.get(c[0]) is not None for r in rows)]
    if not cols:
        return
    title = "Probes: side A (econ-left / social-liberal) − B; harmful-ask compliance and its change vs base"
    table = Table(title=title + where, title_justify="left")
    table.add_column("model", no_wrap=True)
    for _, head, _ in cols:
        table.add_column(head, no_wrap=True)

    def cell(key: str, signed: bool, v: float | None) -> str:
        if v is None:
            return ""
        if key == "evenhand.lopsided":
            return "yes" if v else "no"
        return f"{v:+.2f}" if signed else f"{v:.2f}"

    for r in rows:
        table.add_row(r.model, *(cell(k, sg, r.probes.get(k)) for k, _, sg in cols))
    console.print(table)


def _print_compred(rows: list[ModelRow], where: str, console: Console) -> None:
    """Each arm's win-rate against the base per community and its reward accuracy, when measured."""
    rows = [r for r in rows if r.winrate_vs_base or r.reward_accuracy is not None]
    if not rows:
        return
    table = Table(title=f"Community preference, 95% CI{where}", title_justify="left")
    for col in ("model", "reward accuracy", "win-rate vs base", "community"):
        table.add_column(col, no_wrap=col != "community")
    for r in rows:
        acc = f"{r.reward_accuracy:.2f} {r.reward_accuracy_ci.fmt()}" if r.reward_accuracy is not None else ""
        rates = [(f"{v:.2f} {c.fmt()}", name) for name, (v, c) in r.winrate_vs_base.items() if v is not None]
        for i, (rate, name) in enumerate(rates or [("", "")]):
            table.add_row(r.model if i == 0 else "", acc if i == 0 else "", rate, name)
    console.print(table)
