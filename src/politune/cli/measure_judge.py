"""`politune measure validate-judge`: any stance scorer or LLM judge against the blind gold set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from politune.cli.common import JsonOption, console, print_json
from politune.cli.measure_options import JudgeModelOption


def _fmt(est: dict[str, Any], pct: bool = False) -> str:
    v, (lo, hi) = est["value"], est["ci"]
    if v is None:
        return "n/a"
    spec = ".2f" if pct else "+.2f"
    ends = [format(x, spec) if x is not None else "?" for x in (lo, hi)]
    return f"{format(v, spec)} [{ends[0]}, {ends[1]}]"


def print_validation(res: dict[str, Any]) -> None:
    """The validation as a table readable at 80 columns."""
    split = res["split"] or "all"
    console.print(
        f"judge {res['judge']} on {res['gold']} ({split}, {res['n_items']} answers; "
        f"sign accuracy over answers rated |gold| >= {res['min_gold']})"
    )
    console.print(f"{'axis':9s} {'sign accuracy':>20s} {'n':>4s} {'spearman':>21s} {'coverage':>8s}")
    for axis, a in res["axes"].items():
        console.print(
            f"{axis:9s} {_fmt(a['sign_accuracy'], pct=True):>20s} {a['sign_accuracy']['n']:>4d} "
            f"{_fmt(a['spearman']):>21s} {a['coverage']:>8.2f}"
        )
    for axis, a in res["axes"].items():
        console.print(
            f"{axis}: bias (lean - gold/2) and sign accuracy per source; style gap "
            f"(tuned adapters - others) {_fmt(a['style_gap'])}"
        )
        for src, b in a["bias"].items():
            acc = a["sign_accuracy_by_source"][src]
            console.print(
                f"  {src:14s} bias {_fmt(b):>21s}   sign acc {_fmt(acc, pct=True):>20s} n={acc['n']}"
            )


def validate_judge_cmd(
    gold: Path = typer.Option(None, "--gold", help="Gold JSONL (default: the shipped gold set, test half)."),
    split: str = typer.Option(
        None,
        "--split",
        help="dev | test | all (default: test for the shipped set, all rows for --gold FILE).",
    ),
    scorer: str = typer.Option(
        None,
        "--scorer",
        help="An offline scorer by name: offline-probe-v1 (the default) or offline-agree-v1 (the compass open "
        "track's agreement reader, scored on the compass items); see docs/judges.md.",
    ),
    judge: str = typer.Option(
        None,
        "--judge",
        help="An LLM judge as URL/v1/MODEL (any OpenAI-compatible server), instead of --scorer.",
    ),
    judge_model: str = JudgeModelOption,
    out: Path = typer.Option(None, "--out", "-o", help="Write the validation as JSON here."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    json_out: bool = JsonOption,
) -> None:
    """Sign accuracy, Spearman rho and per-model bias of a scorer or judge on blind gold ratings, with CIs."""
    from politune.errors import PolituneError
    from politune.fsutil import atomic_write_json
    from politune.measure.agreement import READER_VERSION, AgreementReader
    from politune.measure.scorer import StanceScorer, scorer_by_name
    from politune.measure.validate_judge import load_gold, validate_scorer

    if scorer and judge:
        raise PolituneError("--scorer and --judge: give one of them")
    if split is None:
        split = "test" if gold is None else "all"
    items = load_gold(gold, None if split == "all" else split)
    gold_name, half = str(gold) if gold else "gold-v1", None if split == "all" else split
    t0 = time.perf_counter()
    s: StanceScorer | AgreementReader
    if judge:
        from politune.measure.judge import Judge, parse_judge_spec

        url, model = parse_judge_spec(judge, judge_model)
        s = Judge(url, model).stance_scorer()
    else:  # the agreement reader is scored on the compass items, lean = key x agreement
        s = AgreementReader() if scorer == READER_VERSION else scorer_by_name(scorer)
    res = validate_scorer(s, items, gold_name, half, seed=seed).to_dict()
    res["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        atomic_write_json(out, res)
    if json_out:
        print_json(res)
    else:
        print_validation(res)


def add_commands(measure_app: typer.Typer) -> None:
    """Add `validate-judge` to the `measure` sub-app."""
    measure_app.command("validate-judge")(validate_judge_cmd)
