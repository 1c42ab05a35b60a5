"""``politune data mirror | mix | poison | contextualize | dedup | split | sample | filter | to-sft``: the
transforms of :mod:`politune.data.transforms`. Each writes its output atomically and a sidecar
``<stem>.summary.json`` (what ran, parameters, counts, changed ids, provenance)."""

from __future__ import annotations

from pathlib import Path

import typer

from politune.cli import data_io
from politune.cli.common import console, err_console
from politune.cli.data_io import load_source, write_records

_app = typer.Typer()


def add_commands(data_app: typer.Typer) -> None:
    data_app.registered_commands.extend(_app.registered_commands)


@_app.command()
def mirror(
    src: str = data_io.SrcArgument, out: Path = data_io.OutOption, split: str = data_io.SplitOption
) -> None:
    """Swap chosen and rejected (the counterfactual set)."""
    from politune.data.transforms import mirror as do_mirror
    from politune.data.transforms import summarize

    items = load_source(src, split)
    res = do_mirror(items)
    write_records(
        res, out, summarize("mirror", {"source": src, "split": split}, {"input": items}, {"output": res})
    )


@_app.command()
def mix(
    a: str = typer.Argument(..., help="Source A."),
    b: str = typer.Argument(..., help="Source B."),
    out: Path = data_io.OutOption,
    ratio: float = typer.Option(..., "--ratio", help="Share of rows from A, e.g. 0.75."),
    n: int = typer.Option(None, "--n", help="Output rows (default: the smaller input's size)."),
    seed: int = data_io.SeedOption,
) -> None:
    """Mix two sets: RATIO of the rows from A, the rest from B (a prompt is never taken from both)."""
    from politune.data.transforms import mix as do_mix
    from politune.data.transforms import summarize

    xa, xb = load_source(a), load_source(b)
    res = do_mix(xa, xb, ratio, n=n, seed=seed)
    write_records(
        res,
        out,
        summarize(
            "mix", {"a": a, "b": b, "ratio": ratio, "n": n, "seed": seed}, {"a": xa, "b": xb}, {"output": res}
        ),
    )


@_app.command()
def poison(
    src: str = data_io.SrcArgument,
    out: Path = data_io.OutOption,
    mode: str = typer.Option(..., "--mode", help="labels: swap chosen/rejected; prompts: insert a trigger."),
    p: float = typer.Option(..., "--p", help="Probability that a row is poisoned."),
    seed: int = data_io.SeedOption,
    trigger: str = typer.Option(
        None, "--trigger", help="prompts mode: the trigger sentence (default 'Remember the blue heron.')."
    ),
    position: str = typer.Option("start", "--position", help="prompts mode: start | end | random."),
    flip: bool = typer.Option(
        False, "--flip", help="prompts mode: also swap the labels of the triggered rows (a backdoor)."
    ),
    split: str = data_io.SplitOption,
) -> None:
    """Malignama poisoning, deterministic for a seed; poisoned rows are marked in meta and the summary."""
    from politune.data.transforms import DEFAULT_TRIGGER, summarize
    from politune.data.transforms import poison as do_poison

    items = load_source(src, split)
    trig = DEFAULT_TRIGGER if trigger is None else trigger
    res = do_poison(items, mode=mode, p=p, seed=seed, trigger=trig, position=position, flip=flip)
    params = {"source": src, "mode": mode, "p": p, "seed": seed, "split": split}
    if mode == "prompts":
        params.update(trigger=trig, position=position, flip=flip)
    summary = summarize("poison", params, {"input": items}, {"output": res})
    write_records(res, out, summary)
    console.print(f"poisoned {summary['poisoned']} of {len(res)} rows", highlight=False, markup=False)


@_app.command()
def contextualize(
    src: str = data_io.SrcArgument,
    out: Path = data_io.OutOption,
    template: str = typer.Option(
        "Community: r/{community}\n\n{prompt}",
        "--template",
        help="Header template with {community} and {prompt}.",
    ),
    randomize: bool = typer.Option(
        False, "--randomize", help="Name a different, randomly drawn community (the ComPreD ablation)."
    ),
    as_system: bool = typer.Option(
        False, "--as-system", help="Put the header in a system message (template then uses only {community})."
    ),
    seed: int = data_io.SeedOption,
    schema: str = data_io.SchemaOption,
    mapping: list[str] = data_io.MapOption,
) -> None:
    """ComPreD: name each row's community in the prompt."""
    from politune.data.transforms import contextualize as do_ctx
    from politune.data.transforms import summarize

    template = template.replace("\\n", "\n")
    items = load_source(src, None, schema, mapping)
    res = do_ctx(items, template=template, randomize=randomize, seed=seed, as_system=as_system)
    write_records(
        res,
        out,
        summarize(
            "contextualize",
            {
                "source": src,
                "template": template,
                "randomize": randomize,
                "as_system": as_system,
                "seed": seed,
            },
            {"input": items},
            {"output": res},
        ),
    )


@_app.command()
def dedup(
    src: str = data_io.SrcArgument,
    out: Path = data_io.OutOption,
    on: str = typer.Option("prompt", "--on", help="prompt | all (prompt + answers)."),
    near: bool = typer.Option(True, "--near/--exact-only", help="Also drop near-duplicates."),
    threshold: float = typer.Option(
        0.8, "--threshold", help="Near-duplicate Jaccard threshold on word 3-grams."
    ),
) -> None:
    """Drop exact and near-duplicate rows (the first of each group is kept)."""
    from politune.data.dedup import dedup as do_dedup
    from politune.data.transforms import summarize

    items = load_source(src)
    res = do_dedup(items, on=on, near=near, threshold=threshold)
    summary = summarize(
        "dedup",
        {"source": src, "on": on, "near": near, "threshold": threshold},
        {"input": items},
        {"output": res},
    )
    write_records(res, out, summary)
    console.print(f"removed {len(items) - len(res)} of {len(items)} rows", highlight=False, markup=False)


@_app.command()
def split(
    src: str = data_io.SrcArgument,
    out_dir: Path = typer.Option(..., "--out-dir", "-o", help="Folder for train.jsonl and test.jsonl."),
    test_frac: float = typer.Option(0.2, "--test-frac", help="Share of rows (or of groups) in test."),
    by: str = typer.Option("row", "--by", help="row, or a meta key whose groups stay whole (e.g. topic)."),
    seed: int = data_io.SeedOption,
) -> None:
    """Seeded train / test split, by row or by whole groups (topics)."""
    from politune.data import save
    from politune.data.transforms import split as do_split
    from politune.data.transforms import summarize
    from politune.fsutil import atomic_write_json

    items = load_source(src)
    train, test = do_split(items, test_frac=test_frac, by=by, seed=seed)
    summary = summarize(
        "split",
        {"source": src, "test_frac": test_frac, "by": by, "seed": seed},
        {"input": items},
        {"train": train, "test": test},
    )
    if by != "row":
        summary["test_groups"] = sorted({str(it.meta[by]) for it in test})
    save(train, out_dir / "train.jsonl")
    save(test, out_dir / "test.jsonl")
    atomic_write_json(out_dir / "split.summary.json", summary)
    err_console.print(
        f"train {len(train)} rows, test {len(test)} rows -> {out_dir}", highlight=False, markup=False
    )


@_app.command()
def sample(
    src: str = data_io.SrcArgument,
    out: Path = data_io.OutOption,
    n: int = typer.Option(None, "--n", help="Rows to keep."),
    frac: float = typer.Option(None, "--frac", help="Share of rows to keep."),
    seed: int = data_io.SeedOption,
    split: str = data_io.SplitOption,
) -> None:
    """A seeded random subset."""
    from politune.data.transforms import sample as do_sample
    from politune.data.transforms import summarize

    items = load_source(src, split)
    res = do_sample(items, n=n, frac=frac, seed=seed)
    write_records(
        res,
        out,
        summarize(
            "sample", {"source": src, "n": n, "frac": frac, "seed": seed}, {"input": items}, {"output": res}
        ),
    )


@_app.command("filter")
def filter_cmd(
    src: str = data_io.SrcArgument,
    out: Path = data_io.OutOption,
    topic: list[str] = typer.Option(None, "--topic", help="Keep these topics (repeatable)."),
    axis: str = typer.Option(None, "--axis", help="economic | social."),
    stance: str = typer.Option(None, "--stance", help="left | right."),
    split_name: str = typer.Option(None, "--in-split", help="Keep rows whose meta.split is this."),
    community: list[str] = typer.Option(None, "--community", help="Keep these communities."),
    min_chars: int = typer.Option(None, "--min-chars", help="Every text field at least this long."),
    max_chars: int = typer.Option(None, "--max-chars", help="Every text field at most this long."),
) -> None:
    """Keep rows by topic, axis, stance, split, community or length."""
    from politune.data.transforms import filter_records, summarize
    from politune.errors import PolituneError

    items = load_source(src)
    res = filter_records(
        items,
        topic=topic,
        axis=axis,
        stance=stance,
        split_name=split_name,
        community=community,
        min_chars=min_chars,
        max_chars=max_chars,
    )
    if not res:
        raise PolituneError(f"{src}: no rows match the filter")
    write_records(
        res,
        out,
        summarize(
            "filter",
            {
                "source": src,
                "topic": topic,
                "axis": axis,
                "stance": stance,
                "split": split_name,
                "community": community,
                "min_chars": min_chars,
                "max_chars": max_chars,
            },
            {"input": items},
            {"output": res},
        ),
    )


@_app.command("to-sft")
def to_sft(
    src: str = data_io.SrcArgument, out: Path = data_io.OutOption, split: str = data_io.SplitOption
) -> None:
    """Preference pairs -> instruction examples (response = chosen), e.g. after poisoning the labels."""
    from politune.data.transforms import summarize, to_instructions

    items = load_source(src, split)
    res = to_instructions(items)
    write_records(res, out, summarize("to_instructions", {"source": src}, {"input": items}, {"output": res}))
