"""``politune data ...``: load, validate, stats, the transforms and the contamination check.

Every SRC is anything :func:`politune.data.load` reads: ``builtin:left[:train|:heldout]``, ``hf:OWNER/NAME``, a
``.jsonl`` / ``.csv`` / ``.parquet`` / ``.json`` file or a dataset folder. Every transform writes its output
atomically and a sidecar ``<stem>.summary.json`` (what ran, parameters, counts, changed ids, provenance).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from politune.cli import data_transforms
from politune.cli.common import JsonOption, console, err_console, print_json
from politune.cli.data_io import (
    MapOption,
    OutOption,
    SchemaOption,
    SeedOption,
    SplitOption,
    SrcArgument,
    load_source,
    load_tokenizer_named,
    parse_mapping,
    write_records,
)

if TYPE_CHECKING:
    from politune.data.loaders import LoadReport

data_app = typer.Typer(
    help="Preference / instruction data: load, validate, stats, mirror, mix, poison, "
    "contextualize, dedup, split, sample, filter, overlap.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    data_transforms.add_commands(data_app)
    app.add_typer(data_app, name="data")


@data_app.command("load")
def load_cmd(
    src: str = SrcArgument,
    out: Path = OutOption,
    schema: str = SchemaOption,
    mapping: list[str] = MapOption,
    split: str = SplitOption,
    validate: bool = typer.Option(
        True, "--validate/--no-validate", help="Run the content checks (structure is always checked)."
    ),
    drop_invalid: bool = typer.Option(
        False,
        "--drop-invalid",
        help="Write the good rows and put each bad row with its reasons in <stem>.rejected.jsonl.",
    ),
    min_score_ratio: float = typer.Option(
        2.0, "--min-score-ratio", help="shp: keep pairs whose score_ratio is at least this (0 keeps all)."
    ),
    max_per_post: int = typer.Option(
        5, "--max-per-post", help="shp: at most this many pairs per post_id, drawn with --seed (0 = no cap)."
    ),
    keep_ties: bool = typer.Option(False, "--keep-ties", help="webgpt: keep equal-score comparisons."),
    hf_config: str = typer.Option(None, "--hf-config", help="hf: dataset configuration name."),
    seed: int = SeedOption,
) -> None:
    """Load any source in any supported schema and write it as politune records."""
    from politune.data import LoadOptions, load_report
    from politune.data.loaders import rejected_path
    from politune.data.transforms import summarize
    from politune.errors import PolituneError
    from politune.fsutil import atomic_write_jsonl

    options = LoadOptions(
        seed=seed,
        min_score_ratio=min_score_ratio or None,
        max_pairs_per_post=max_per_post or None,
        keep_ties=keep_ties,
        hf_config=hf_config,
    )
    rep = load_report(
        src, schema=schema, mapping=parse_mapping(mapping), split=split, validate=validate, options=options
    )
    if rep.issues and not drop_invalid:
        raise PolituneError(rep.error_line())
    if not rep.items:
        raise PolituneError(f"{src}: no valid rows")
    if rep.rejected:
        atomic_write_jsonl(rejected_path(out), rep.rejected)
        err_console.print(
            f"{len(rep.rejected)} bad rows -> {rejected_path(out)}", highlight=False, markup=False
        )
    summary = summarize(
        "load",
        {
            "source": src,
            "schema": rep.schema,
            "mapping": parse_mapping(mapping),
            "split": split,
            "min_score_ratio": min_score_ratio,
            "max_per_post": max_per_post,
            "keep_ties": keep_ties,
            "seed": seed,
        },
        {"source": []},
        {"output": rep.items},
        rows_read=rep.rows_read,
        dropped=rep.dropped,
        rejected=len(rep.rejected),
    )
    summary["inputs"] = {"source": {"rows": rep.rows_read}}
    write_records(rep.items, out, summary)


MaxCharsOption = typer.Option(
    100_000, "--max-chars", help="Longest allowed text field in characters (0 = no limit)."
)
MaxTokensOption = typer.Option(
    None, "--max-tokens", help="Longest allowed text field in tokens (needs --tokenizer)."
)
TokenizerOption = typer.Option(
    None, "--tokenizer", help="Model whose tokenizer counts tokens, e.g. smollm2-135m."
)
DropInvalidOption = typer.Option(
    False,
    "--drop-invalid",
    help="Write the good rows to --out and the bad ones with their reasons to <stem>.rejected.jsonl; exit 0.",
)
ValidOutOption = typer.Option(
    None,
    "--out",
    "-o",
    help="With --drop-invalid: where the good rows go (default <input stem>.valid.jsonl).",
)


@data_app.command()
def validate(
    src: str = SrcArgument,
    schema: str = SchemaOption,
    mapping: list[str] = MapOption,
    split: str = SplitOption,
    max_chars: int = MaxCharsOption,
    max_tokens: int | None = MaxTokensOption,
    tokenizer: str | None = TokenizerOption,
    drop_invalid: bool = DropInvalidOption,
    out: Path | None = ValidOutOption,
    json_out: bool = JsonOption,
) -> None:
    """Check every row: print each problem as `file:line: field: problem`; exit 2 if any."""
    from politune.data import LoadOptions, load_report
    from politune.errors import PolituneError

    if max_tokens is not None and not tokenizer:
        raise PolituneError("--max-tokens needs --tokenizer")
    rep = load_report(
        src,
        schema=schema,
        mapping=parse_mapping(mapping),
        split=split,
        max_chars=max_chars or None,
        options=LoadOptions(tokenizer=load_tokenizer_named(tokenizer), max_tokens=max_tokens),
    )
    if json_out:
        print_json(
            {
                "source": src,
                "schema": rep.schema,
                "kind": rep.kind,
                "rows_read": rep.rows_read,
                "valid": len(rep.items),
                "bad_rows": len(rep.rejected),
                "dropped": rep.dropped,
                "issues": [str(i) for i in rep.issues],
            }
        )
    else:
        for i in rep.issues:
            err_console.print(str(i), highlight=False, markup=False, soft_wrap=True)
    if drop_invalid:
        _write_valid(rep, src, out)
        return
    if rep.issues:
        n = len(rep.issues)
        raise PolituneError(
            f"{src}: {n} problem{'s' if n > 1 else ''} in {len(rep.rejected)} of {rep.rows_read} rows"
        )
    if not json_out:
        drop = (
            f" ({', '.join(f'{k}: {v}' for k, v in rep.dropped.items())} dropped by schema filters)"
            if rep.dropped
            else ""
        )
        console.print(
            f"{src}: {len(rep.items)} valid {rep.kind} rows ({rep.schema} schema){drop}",
            highlight=False,
            markup=False,
        )


def _write_valid(rep: LoadReport, src: str, out: Path | None) -> None:
    """``validate --drop-invalid``: the good rows to ``out`` (default ``<stem>.valid.jsonl``), the bad ones with
    their reasons next to it."""
    from politune.data.loaders import rejected_path, save
    from politune.errors import PolituneError
    from politune.fsutil import atomic_write_jsonl

    if not rep.items:
        raise PolituneError(f"{src}: no valid rows to write")
    if out is None:
        if src.startswith(("builtin:", "hf:")):
            raise PolituneError("--drop-invalid on builtin:/hf: sources needs --out")
        p = Path(src)
        out = p.with_name(f"{p.name.split('.')[0]}.valid.jsonl")
    save(rep.items, out)
    if rep.rejected:
        atomic_write_jsonl(rejected_path(out), rep.rejected)
    err_console.print(
        f"{len(rep.items)} valid rows -> {out}; {len(rep.rejected)} rejected -> {rejected_path(out)}",
        highlight=False,
        markup=False,
    )


@data_app.command()
def stats(
    src: str = SrcArgument,
    split: str = SplitOption,
    schema: str = SchemaOption,
    mapping: list[str] = MapOption,
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="Also count tokens with this model's tokenizer, e.g. smollm2-135m."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Rows, topics, axis / stance balance, duplicates and lengths."""
    from politune.data.stats import stats as do_stats

    st = do_stats(load_source(src, split, schema, mapping), tokenizer=load_tokenizer_named(tokenizer))
    if json_out:
        print_json(st)
        return
    console.print(
        f"{src}: {st['rows']} {st['kind']} rows, {st['topics']} topics", highlight=False, markup=False
    )
    for k in ("axis", "stance", "split", "form"):
        if st[k]:
            console.print(
                f"  {k:10s} " + ", ".join(f"{a}: {n}" for a, n in sorted(st[k].items())),
                highlight=False,
                markup=False,
            )
    if st["communities"]:
        top = list(st["per_community"].items())[:10]
        console.print(
            f"  communities {st['communities']}: " + ", ".join(f"{a}: {n}" for a, n in top),
            highlight=False,
            markup=False,
        )
    console.print(
        f"  duplicates prompts: {st['duplicate_prompts']}, ids: {st['duplicate_ids']}; "
        f"poisoned: {st['poisoned']}",
        highlight=False,
        markup=False,
    )
    for unit in ("chars", "tokens"):
        for f, d in st.get(unit, {}).items():
            if d:
                console.print(
                    f"  {unit:6s} {f:9s} mean {d['mean']:.0f}  median {d['median']:.0f}  "
                    f"p95 {d['p95']:.0f}  max {d['max']:.0f}",
                    highlight=False,
                    markup=False,
                )
    if st["per_topic"]:
        console.print(
            "  per topic: " + ", ".join(f"{t} ({n})" for t, n in st["per_topic"].items()),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@data_app.command()
def overlap(
    src: str = SrcArgument,
    against: Path = typer.Option(
        ...,
        "--against",
        help="Evaluation items: a YAML instrument "
        "(items: [{id, text, paraphrases, negation}]), a JSONL/CSV/Parquet table "
        "or a .txt file (one item per line).",
    ),
    ngram: int = typer.Option(8, "--ngram", help="Word n-gram size."),
    ngram_threshold: float = typer.Option(
        0.5, "--ngram-threshold", help="Flag when this share of an item's n-grams occurs in a training text."
    ),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Also compare MiniLM embeddings."),
    embed_threshold: float = typer.Option(
        0.85, "--embed-threshold", help="Flag at this cosine similarity or above."
    ),
    split: str = SplitOption,
    out: Path = typer.Option(None, "--out", "-o", help="Write the full report (JSON)."),
    json_out: bool = JsonOption,
) -> None:
    """Flag training prompts or answers too close to evaluation items; exit 1 if any is flagged."""
    from politune.data.overlap import load_items
    from politune.data.overlap import overlap as do_overlap
    from politune.fsutil import atomic_write_json

    items = load_source(src, split)
    ev = load_items(against)
    rep = do_overlap(
        items, ev, ngram=ngram, ngram_threshold=ngram_threshold, embed=embed, embed_threshold=embed_threshold
    )
    rep["source"], rep["against"] = src, str(against)
    if out is not None:
        atomic_write_json(out, rep)
    if json_out:
        print_json(rep)
    else:
        for f in rep["flags"][:50]:
            console.print(
                f"{f['row_id']} {f['field']} ~ {f['item_id']} ({f['item_variant']}): {f['signal']} "
                f"{f['score']:.2f}: {f['row_text'][:90]!r}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        if len(rep["flags"]) > 50:
            console.print(f"... {len(rep['flags']) - 50} more flags (see --out / --json)")
        ms = rep["max_embedding_similarity"]
        console.print(
            f"{rep['flagged_rows']} of {rep['rows']} rows flagged against {rep['items']} items "
            f"({rep['item_texts']} texts); max embedding similarity "
            f"{'n/a' if ms is None else f'{ms:.3f}'}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if rep["flags"]:
        sys.exit(1)  # not typer.Exit: the root app runs with standalone_mode=False, which swallows its code
