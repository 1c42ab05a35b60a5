"""`politune measure compass`: the compass part of the measure pillar (see docs/compass.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from politune.cli.common import (
    DeviceOption,
    DtypeOption,
    JsonOption,
    ThreadsOption,
    console,
    err_console,
    print_json,
    set_threads,
)
from politune.cli.measure_options import (
    AdapterOption,
    BaseURLOption,
    BatchOption,
    ModelOption,
    PersonaOption,
    SeedOption,
    SystemOption,
    results_folder_option,
    split_csv,
)
from politune.errors import PolituneError
from politune.measure.results import AXES, AxisScore, CompassResult

if TYPE_CHECKING:
    from politune.measure.scorer import OpenScorer

CompassOutOption = results_folder_option("compass", "compass.json; a path ending .json is written as is")


def _say_measuring(target: str) -> None:
    err_console.print(f"measuring [bold]{target}[/] ...")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_compass_table(result: CompassResult) -> None:
    """Per target, track and axis: score, CI, coverage, refusals, content sensitivity; then diagnostics,
    agreement between tracks, and the comparisons with the first target."""
    from rich import box
    from rich.table import Table

    inst = result.instrument or {}
    t = Table(
        title=f"compass ({inst.get('name')} v{inst.get('version')}, {inst.get('items')} items; cov = "
        "coverage, ref = refusal rate, c.sens = content sensitivity)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("target", "track", "axis", "score", "95% CI", "cov", "ref", "c.sens"):
        t.add_column(col, no_wrap=True)
    for m in result.models:
        for name, tr in m.tracks.items():
            for axis in AXES:
                a = tr.axis(axis) or AxisScore()
                t.add_row(
                    m.target.name,
                    name,
                    axis,
                    "-" if a.score is None else f"{a.score:+.2f}",
                    f"[{a.ci.lo:+.2f}, {a.ci.hi:+.2f}]" if a.ci.ok else "-",
                    _num(a.coverage),
                    _num(tr.refusal_rate),
                    _num(tr.content_sensitivity),
                )
    console.print(t)
    if result.settings.get("scorer"):
        from politune.measure.validate_judge import validation_note

        console.print(
            "open track: "
            + validation_note(result.settings["scorer"], result.settings.get("scorer_validation"))
        )
    _print_diagnostics(result)
    _print_comparisons(result)


def _print_diagnostics(result: CompassResult) -> None:
    from rich import box
    from rich.table import Table

    d = Table(
        title="diagnostics per track (acquiescence 0.5 = none; flip = item vs negation consistency; "
        "order = order sensitivity)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("target", "track", "acquiesce", "flip", "order", "refusals", "coverage"):
        d.add_column(col, no_wrap=True)
    for m in result.models:
        for name, dg in (m.diagnostics.by_track or {}).items():
            d.add_row(
                m.target.name,
                name,
                _num(dg.acquiescence),
                _num(dg.flip_consistency),
                _num(dg.order_sensitivity),
                _num(dg.refusal_rate),
                _num(dg.coverage),
            )
    console.print(d)
    for m in result.models:
        if m.agreement:
            pairs = ", ".join(f"{k} {_num(v)}" for k, v in m.agreement.items())
            n_dis = sum(i.disagree for i in m.items)
            console.print(f"{m.target.name}: track agreement {pairs}; {n_dis} items where tracks disagree")


def _print_comparisons(result: CompassResult) -> None:
    from rich import box
    from rich.table import Table

    if result.comparisons:
        c = Table(title="differences vs the first target (b - a)", box=box.SIMPLE_HEAD)
        for col in ("a", "b", "track", "axis", "diff [95% CI]", "sees it"):
            c.add_column(col, no_wrap=True)
        for r in result.comparisons:
            if r.diff is None or not r.ci.ok:
                c.add_row(r.a, r.b, r.track, r.axis, "-", "-")
                continue
            c.add_row(
                r.a,
                r.b,
                r.track,
                r.axis,
                f"{r.diff:+.2f} [{r.ci.lo:+.2f}, {r.ci.hi:+.2f}]",
                "yes" if r.ci.excludes_zero else "no",
            )
        console.print(c)


def _open_reader(name: str) -> OpenScorer | None:
    """``--open-reader``: the stance probe for ``probe``; else None, the open track's default (the agreement
    reader, :func:`politune.measure.compass.run.default_scorer`)."""
    if name not in ("agree", "probe"):
        raise PolituneError(f"--open-reader {name!r}: expected agree or probe")
    if name == "agree":
        return None
    from politune.measure.stance import OfflineStanceScorer

    return OfflineStanceScorer()


def add_commands(measure_app: typer.Typer) -> None:
    """Add `politune measure compass` to the `measure` sub-app."""
    measure_app.command("compass")(compass)


def compass(
    model: str = ModelOption,
    adapter: list[str] = AdapterOption,
    persona: list[str] = PersonaOption,
    system: str = SystemOption,
    no_base: bool = typer.Option(False, "--no-base", help="Do not measure the plain base target."),
    tracks: str = typer.Option(
        "logprob,choice,open", "--tracks", "-t", help="Comma list of logprob, choice, open."
    ),
    instrument: str = typer.Option(
        "builtin", "--instrument", "-i", help="'builtin' or an instrument YAML file (docs/instruments.md)."
    ),
    items: int = typer.Option(None, "--items", help="Use a balanced subset of N items (default: all)."),
    variants: str = typer.Option(
        "text,paraphrases,negation",
        "--variants",
        help="Statement variants for the log-prob and choice tracks.",
    ),
    orders: str = typer.Option("forward,reversed", "--orders", help="Option orders: forward, reversed."),
    temperature: float = typer.Option(
        0.0, "--temperature", help="Decoding temperature for choice/open (0 = greedy)."
    ),
    samples: int = typer.Option(1, "--samples", help="Answers per prompt when temperature > 0."),
    seed: int = SeedOption,
    batch_size: int = BatchOption,
    base_url: str = BaseURLOption,
    out: Path = CompassOutOption,
    keep_answers: bool = typer.Option(False, "--keep-answers", help="Store every generated answer."),
    open_reader: str = typer.Option(
        "agree",
        "--open-reader",
        help="What reads the open answers: agree (offline-agree-v1: key x agreement with the statement) | "
        "probe (offline-probe-v1: the stance probe's lean). Both validated: docs/judges.md.",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    threads: int = ThreadsOption,
    json_out: bool = JsonOption,
) -> None:
    """Where the model sits (economic left/right, social libertarian/authoritarian) by log-prob, choice and
    open answers, with 95% bootstrap CIs, bias diagnostics and differences between targets."""
    from politune.measure.compass import measure_compass, save_compass
    from politune.measure.targets import build_targets

    set_threads(threads)
    targets = build_targets(model, adapter, persona, system=system, include_base=not no_base)
    scorer = _open_reader(open_reader)
    result = measure_compass(
        targets,
        instrument=instrument,
        tracks=split_csv(tracks) or [],
        seed=seed,
        base_url=base_url,
        device=device,
        dtype=dtype,
        keep_answers=keep_answers,
        items=items,
        scorer=scorer,
        variants=split_csv(variants) or [],
        orders=split_csv(orders) or [],
        temperature=temperature,
        samples=samples,
        batch_size=batch_size,
        progress=_say_measuring,
    )
    path = save_compass(result, out)
    if json_out:
        print_json(result.to_json())
    else:
        print_compass_table(result)
        console.print(f"wrote {path}")
