"""``politune data ...``: load, validate, stats, the transforms and the contamination check.

Every SrcArgument is anything :func:`politune.data.load` reads: ``builtin:left[:train|:heldout]``, ``hf:OWNER/NAME``, a
``.jsonl`` / ``.csv`` / ``.parquet`` / ``.json`` file or a dataset folder. Every transform writes its output
atomically and a sidecar ``<stem>.summary.json`` (what ran, parameters, counts, changed ids, provenance).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from politune.cli.common import JsonOption, console, err_console, print_json

data_app = typer.Typer(help="Preference / instruction data: load, validate, stats, mirror, mix, poison, "
                            "contextualize, dedup, split, sample, filter, overlap.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


SrcArgument = typer.Argument(..., help="builtin:NAME[:SplitOption], hf:OWNER/NAME, a .jsonl/.csv/.parquet/.json file or a folder.")
OutOption = typer.Option(..., "--out", "-o", help="Output file (.jsonl, .jsonl.gz, .csv or .parquet).")
SchemaOption = typer.Option("auto", "--schema", help="auto | politune | shp | webgpt.")
MapOption = typer.Option(None, "--map", help="Column mapping FIELD=COLUMN[,FIELD=COLUMN...] (repeatable); fields: id, "
                   "prompt, chosen, rejected, response, system, meta, topic, axis, stance, community.")
SplitOption = typer.Option(None, "--split", help="train / heldout for builtin sets; hub / folder split for hf: ids "
                     "and folders; a meta.split filter for files.")
SeedOption = typer.Option(0, "--seed", help="Random seed.")


def _mapping(values: list[str] | None) -> dict[str, str]:
    from politune.errors import PolituneError

    out: dict[str, str] = {}
    for v in values or []:
        for part in v.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise PolituneError(f"--map {part!r}: expected FIELD=COLUMN")
            k, col = (x.strip() for x in part.split("=", 1))
            if not k or not col:
                raise PolituneError(f"--map {part!r}: expected FIELD=COLUMN")
            out[k] = col
    return out


def _tokenizer(name: str | None):
    if not name:
        return None
    from politune.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(name))


def _load(src: str, split: str | None = None, schema: str = "auto", mapping: list[str] | None = None):
    from politune.data import load

    return load(src, split=split, schema=schema, mapping=_mapping(mapping))


def _write(items, out: Path, summary: dict) -> None:
    from politune.data import save, summary_path

    save(items, out, summary=summary)
    err_console.print(f"wrote {len(items)} rows to {out} (summary: {summary_path(out)})", highlight=False, markup=False)


@data_app.command("load")
def load_cmd(src: str = SrcArgument, out: Path = OutOption, schema: str = SchemaOption, mapping: list[str] = MapOption,
             split: str = SplitOption, validate: bool = typer.Option(True, "--validate/--no-validate",
                                                                help="Run the content checks (structure is "
                                                                     "always checked)."),
             drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Write the good rows and put each "
                                               "bad row with its reasons in <stem>.rejected.jsonl."),
             min_score_ratio: float = typer.Option(2.0, "--min-score-ratio", help="shp: keep pairs whose "
                                                   "score_ratio is at least this (0 keeps all)."),
             max_per_post: int = typer.Option(5, "--max-per-post", help="shp: at most this many pairs per "
                                              "post_id, drawn with --seed (0 = no cap)."),
             keep_ties: bool = typer.Option(False, "--keep-ties", help="webgpt: keep equal-score comparisons."),
             hf_config: str = typer.Option(None, "--hf-config", help="hf: dataset configuration name."),
             seed: int = SeedOption) -> None:
    """Load any source in any supported schema and write it as politune records."""
    from politune.data.loaders import LoadOptions, load_report, rejected_path
    from politune.data.transforms import summarize
    from politune.errors import PolituneError
    from politune.fsutil import atomic_write_jsonl

    options = LoadOptions(seed=seed, min_score_ratio=min_score_ratio or None, max_pairs_per_post=max_per_post or None,
                          keep_ties=keep_ties, hf_config=hf_config)
    rep = load_report(src, schema=schema, mapping=_mapping(mapping), split=split, validate=validate,
                      options=options)
    if rep.issues and not drop_invalid:
        raise PolituneError(rep.error_line())
    if not rep.items:
        raise PolituneError(f"{src}: no valid rows")
    if rep.rejected:
        atomic_write_jsonl(rejected_path(out), rep.rejected)
        err_console.print(f"{len(rep.rejected)} bad rows -> {rejected_path(out)}", highlight=False, markup=False)
    summary = summarize("load", {"source": src, "schema": rep.schema, "mapping": _mapping(mapping), "split": split,
                                 "min_score_ratio": min_score_ratio, "max_per_post": max_per_post,
                                 "keep_ties": keep_ties, "seed": seed}, {"source": []}, {"output": rep.items},
                        rows_read=rep.rows_read, dropped=rep.dropped, rejected=len(rep.rejected))
    summary["inputs"] = {"source": {"rows": rep.rows_read}}
    _write(rep.items, out, summary)


@data_app.command()
def validate(src: str = SrcArgument, schema: str = SchemaOption, mapping: list[str] = MapOption, split: str = SplitOption,
             max_chars: int = typer.Option(100_000, "--max-chars", help="Longest allowed text field in characters "
                                           "(0 = no limit)."),
             max_tokens: int = typer.Option(None, "--max-tokens", help="Longest allowed text field in tokens "
                                            "(needs --tokenizer)."),
             tokenizer: str = typer.Option(None, "--tokenizer", help="Model whose tokenizer counts tokens, "
                                           "e.g. smollm2-135m."),
             drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Write the good rows to --out and the "
                                               "bad ones with their reasons to <stem>.rejected.jsonl; exit 0."),
             out: Path = typer.Option(None, "--out", "-o", help="With --drop-invalid: where the good rows go "
                                      "(default <input stem>.valid.jsonl)."),
             json_out: bool = JsonOption) -> None:
    """Check every row: print each problem as `file:line: field: problem`; exit 2 if any."""
    from politune.data.loaders import LoadOptions, load_report, rejected_path, save
    from politune.errors import PolituneError
    from politune.fsutil import atomic_write_jsonl

    if max_tokens is not None and not tokenizer:
        raise PolituneError("--max-tokens needs --tokenizer")
    rep = load_report(src, schema=schema, mapping=_mapping(mapping), split=split, max_chars=max_chars or None,
                      options=LoadOptions(tokenizer=_tokenizer(tokenizer), max_tokens=max_tokens))
    if json_out:
        print_json({"source": src, "schema": rep.schema, "kind": rep.kind, "rows_read": rep.rows_read,
                    "valid": len(rep.items), "bad_rows": len(rep.rejected), "dropped": rep.dropped,
                    "issues": [str(i) for i in rep.issues]})
    else:
        for i in rep.issues:
            err_console.print(str(i), highlight=False, markup=False, soft_wrap=True)
    if drop_invalid:
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
        err_console.print(f"{len(rep.items)} valid rows -> {out}; {len(rep.rejected)} rejected -> "
                          f"{rejected_path(out)}", highlight=False, markup=False)
        return
    if rep.issues:
        n = len(rep.issues)
        raise PolituneError(f"{src}: {n} problem{'s' if n > 1 else ''} in {len(rep.rejected)} of {rep.rows_read} "
                            f"rows")
    if not json_out:
        drop = f" ({', '.join(f'{k}: {v}' for k, v in rep.dropped.items())} dropped by schema filters)" \
            if rep.dropped else ""
        console.print(f"{src}: {len(rep.items)} valid {rep.kind} rows ({rep.schema} schema){drop}", highlight=False, markup=False)


@data_app.command()
def stats(src: str = SrcArgument, split: str = SplitOption, schema: str = SchemaOption, mapping: list[str] = MapOption,
          tokenizer: str = typer.Option(None, "--tokenizer", help="Also count tokens with this model's "
                                        "tokenizer, e.g. smollm2-135m."),
          json_out: bool = JsonOption) -> None:
    """Rows, topics, axis / stance balance, duplicates and lengths."""
    from politune.data.transforms import stats as do_stats

    st = do_stats(_load(src, split, schema, mapping), tokenizer=_tokenizer(tokenizer))
    if json_out:
        print_json(st)
        return
    console.print(f"{src}: {st['rows']} {st['kind']} rows, {st['topics']} topics", highlight=False, markup=False)
    for k in ("axis", "stance", "split", "form"):
        if st[k]:
            console.print(f"  {k:10s} " + ", ".join(f"{a}: {n}" for a, n in sorted(st[k].items())), highlight=False, markup=False)
    if st["communities"]:
        top = list(st["per_community"].items())[:10]
        console.print(f"  communities {st['communities']}: " + ", ".join(f"{a}: {n}" for a, n in top),
                      highlight=False, markup=False)
    console.print(f"  duplicates prompts: {st['duplicate_prompts']}, ids: {st['duplicate_ids']}; "
                  f"poisoned: {st['poisoned']}", highlight=False, markup=False)
    for unit in ("chars", "tokens"):
        for f, d in st.get(unit, {}).items():
            if d:
                console.print(f"  {unit:6s} {f:9s} mean {d['mean']:.0f}  median {d['median']:.0f}  "
                              f"p95 {d['p95']:.0f}  max {d['max']:.0f}", highlight=False, markup=False)
    if st["per_topic"]:
        console.print("  per topic: " + ", ".join(f"{t} ({n})" for t, n in st["per_topic"].items()),
                      highlight=False, markup=False, soft_wrap=True)


@data_app.command()
def mirror(src: str = SrcArgument, out: Path = OutOption, split: str = SplitOption) -> None:
    """Swap chosen and rejected (the counterfactual set)."""
    from politune.data.transforms import mirror as do_mirror
    from politune.data.transforms import summarize

    items = _load(src, split)
    res = do_mirror(items)
    _write(res, out, summarize("mirror", {"source": src, "split": split}, {"input": items}, {"output": res}))


@data_app.command()
def mix(a: str = typer.Argument(..., help="Source A."), b: str = typer.Argument(..., help="Source B."),
        out: Path = OutOption, ratio: float = typer.Option(..., "--ratio", help="Share of rows from A, e.g. 0.75."),
        n: int = typer.Option(None, "--n", help="Output rows (default: the smaller input's size)."),
        seed: int = SeedOption) -> None:
    """Mix two sets: RATIO of the rows from A, the rest from B (a prompt is never taken from both)."""
    from politune.data.transforms import mix as do_mix
    from politune.data.transforms import summarize

    xa, xb = _load(a), _load(b)
    res = do_mix(xa, xb, ratio, n=n, seed=seed)
    _write(res, out, summarize("mix", {"a": a, "b": b, "ratio": ratio, "n": n, "seed": seed},
                               {"a": xa, "b": xb}, {"output": res}))


@data_app.command()
def poison(src: str = SrcArgument, out: Path = OutOption,
           mode: str = typer.Option(..., "--mode", help="labels: swap chosen/rejected; prompts: insert a trigger."),
           p: float = typer.Option(..., "--p", help="Probability that a row is poisoned."),
           seed: int = SeedOption,
           trigger: str = typer.Option(None, "--trigger", help="prompts mode: the trigger sentence "
                                       "(default 'Remember the blue heron.')."),
           position: str = typer.Option("start", "--position", help="prompts mode: start | end | random."),
           flip: bool = typer.Option(False, "--flip", help="prompts mode: also swap the labels of the triggered "
                                     "rows (a backdoor)."),
           split: str = SplitOption) -> None:
    """Malignama poisoning, deterministic for a seed; poisoned rows are marked in meta and the summary."""
    from politune.data.transforms import DEFAULT_TRIGGER, summarize
    from politune.data.transforms import poison as do_poison

    items = _load(src, split)
    trig = DEFAULT_TRIGGER if trigger is None else trigger
    res = do_poison(items, mode=mode, p=p, seed=seed, trigger=trig, position=position, flip=flip)
    params = {"source": src, "mode": mode, "p": p, "seed": seed, "split": split}
    if mode == "prompts":
        params.update(trigger=trig, position=position, flip=flip)
    summary = summarize("poison", params, {"input": items}, {"output": res})
    _write(res, out, summary)
    console.print(f"poisoned {summary['poisoned']} of {len(res)} rows", highlight=False, markup=False)


@data_app.command()
def contextualize(src: str = SrcArgument, out: Path = OutOption,
                  template: str = typer.Option("Community: r/{community}\n\n{prompt}", "--template",
                                               help="Header template with {community} and {prompt}."),
                  randomize: bool = typer.Option(False, "--randomize", help="Name a different, randomly drawn "
                                                 "community (the ComPreD ablation)."),
                  as_system: bool = typer.Option(False, "--as-system", help="Put the header in a system message "
                                                 "(template then uses only {community})."),
                  seed: int = SeedOption, schema: str = SchemaOption, mapping: list[str] = MapOption) -> None:
    """ComPreD: name each row's community in the prompt."""
    from politune.data.transforms import contextualize as do_ctx
    from politune.data.transforms import summarize

    template = template.replace("\\n", "\n")
    items = _load(src, None, schema, mapping)
    res = do_ctx(items, template=template, randomize=randomize, seed=seed, as_system=as_system)
    _write(res, out, summarize("contextualize", {"source": src, "template": template, "randomize": randomize,
                                                 "as_system": as_system, "seed": seed},
                               {"input": items}, {"output": res}))


@data_app.command()
def dedup(src: str = SrcArgument, out: Path = OutOption,
          on: str = typer.Option("prompt", "--on", help="prompt | all (prompt + answers)."),
          near: bool = typer.Option(True, "--near/--exact-only", help="Also drop near-duplicates."),
          threshold: float = typer.Option(0.8, "--threshold", help="Near-duplicate Jaccard threshold on word "
                                          "3-grams.")) -> None:
    """Drop exact and near-duplicate rows (the first of each group is kept)."""
    from politune.data.transforms import dedup as do_dedup
    from politune.data.transforms import summarize

    items = _load(src)
    res = do_dedup(items, on=on, near=near, threshold=threshold)
    summary = summarize("dedup", {"source": src, "on": on, "near": near, "threshold": threshold},
                        {"input": items}, {"output": res})
    _write(res, out, summary)
    console.print(f"removed {len(items) - len(res)} of {len(items)} rows", highlight=False, markup=False)


@data_app.command()
def split(src: str = SrcArgument,
          out_dir: Path = typer.Option(..., "--out-dir", "-o", help="Folder for train.jsonl and test.jsonl."),
          test_frac: float = typer.Option(0.2, "--test-frac", help="Share of rows (or of groups) in test."),
          by: str = typer.Option("row", "--by", help="row, or a meta key whose groups stay whole (e.g. topic)."),
          seed: int = SeedOption) -> None:
    """Seeded train / test split, by row or by whole groups (topics)."""
    from politune.data import save
    from politune.data.transforms import split as do_split
    from politune.data.transforms import summarize
    from politune.fsutil import atomic_write_json

    items = _load(src)
    train, test = do_split(items, test_frac=test_frac, by=by, seed=seed)
    summary = summarize("split", {"source": src, "test_frac": test_frac, "by": by, "seed": seed},
                        {"input": items}, {"train": train, "test": test})
    if by != "row":
        summary["test_groups"] = sorted({str(it.meta[by]) for it in test})
    save(train, out_dir / "train.jsonl")
    save(test, out_dir / "test.jsonl")
    atomic_write_json(out_dir / "split.summary.json", summary)
    err_console.print(f"train {len(train)} rows, test {len(test)} rows -> {out_dir}", highlight=False, markup=False)


@data_app.command()
def sample(src: str = SrcArgument, out: Path = OutOption, n: int = typer.Option(None, "--n", help="Rows to keep."),
           frac: float = typer.Option(None, "--frac", help="Share of rows to keep."), seed: int = SeedOption,
           split: str = SplitOption) -> None:
    """A seeded random subset."""
    from politune.data.transforms import sample as do_sample
    from politune.data.transforms import summarize

    items = _load(src, split)
    res = do_sample(items, n=n, frac=frac, seed=seed)
    _write(res, out, summarize("sample", {"source": src, "n": n, "frac": frac, "seed": seed},
                               {"input": items}, {"output": res}))


@data_app.command("filter")
def filter_cmd(src: str = SrcArgument, out: Path = OutOption,
               topic: list[str] = typer.Option(None, "--topic", help="Keep these topics (repeatable)."),
               axis: str = typer.Option(None, "--axis", help="economic | social."),
               stance: str = typer.Option(None, "--stance", help="left | right."),
               split_name: str = typer.Option(None, "--in-split", help="Keep rows whose meta.split is this."),
               community: list[str] = typer.Option(None, "--community", help="Keep these communities."),
               min_chars: int = typer.Option(None, "--min-chars", help="Every text field at least this long."),
               max_chars: int = typer.Option(None, "--max-chars", help="Every text field at most this long.")) -> None:
    """Keep rows by topic, axis, stance, split, community or length."""
    from politune.data.transforms import filter_records, summarize
    from politune.errors import PolituneError

    items = _load(src)
    res = filter_records(items, topic=topic, axis=axis, stance=stance, split_name=split_name, community=community,
                         min_chars=min_chars, max_chars=max_chars)
    if not res:
        raise PolituneError(f"{src}: no rows match the filter")
    _write(res, out, summarize("filter", {"source": src, "topic": topic, "axis": axis, "stance": stance,
                                          "split": split_name, "community": community, "min_chars": min_chars,
                                          "max_chars": max_chars}, {"input": items}, {"output": res}))


@data_app.command("to-sft")
def to_sft(src: str = SrcArgument, out: Path = OutOption, split: str = SplitOption) -> None:
    """Preference pairs -> instruction examples (response = chosen), e.g. after poisoning the labels."""
    from politune.data.transforms import summarize, to_instructions

    items = _load(src, split)
    res = to_instructions(items)
    _write(res, out, summarize("to_instructions", {"source": src}, {"input": items}, {"output": res}))


@data_app.command()
def overlap(src: str = SrcArgument,
            against: Path = typer.Option(..., "--against", help="Evaluation items: a YAML instrument "
                                         "(items: [{id, text, paraphrases, negation}]), a JSONL/CSV/Parquet table "
                                         "or a .txt file (one item per line)."),
            ngram: int = typer.Option(8, "--ngram", help="Word n-gram size."),
            ngram_threshold: float = typer.Option(0.5, "--ngram-threshold", help="Flag when this share of an "
                                                  "item's n-grams occurs in a training text."),
            embed: bool = typer.Option(True, "--embed/--no-embed", help="Also compare MiniLM embeddings."),
            embed_threshold: float = typer.Option(0.85, "--embed-threshold", help="Flag at this cosine "
                                                  "similarity or above."),
            split: str = SplitOption, out: Path = typer.Option(None, "--out", "-o", help="Write the full report (JSON)."),
            json_out: bool = JsonOption) -> None:
    """Flag training prompts or answers too close to evaluation items; exit 1 if any is flagged."""
    from politune.data.overlap import load_items
    from politune.data.overlap import overlap as do_overlap
    from politune.fsutil import atomic_write_json

    items = _load(src, split)
    ev = load_items(against)
    rep = do_overlap(items, ev, ngram=ngram, ngram_threshold=ngram_threshold, embed=embed,
                     embed_threshold=embed_threshold)
    rep["source"], rep["against"] = src, str(against)
    if out is not None:
        atomic_write_json(out, rep)
    if json_out:
        print_json(rep)
    else:
        for f in rep["flags"][:50]:
            console.print(f"{f['row_id']} {f['field']} ~ {f['item_id']} ({f['item_variant']}): {f['signal']} "
                          f"{f['score']:.2f}: {f['row_text'][:90]!r}", highlight=False, markup=False, soft_wrap=True)
        if len(rep["flags"]) > 50:
            console.print(f"... {len(rep['flags']) - 50} more flags (see --out / --json)")
        ms = rep["max_embedding_similarity"]
        console.print(f"{rep['flagged_rows']} of {rep['rows']} rows flagged against {rep['items']} items "
                      f"({rep['item_texts']} texts); max embedding similarity "
                      f"{'n/a' if ms is None else f'{ms:.3f}'}", highlight=False, markup=False, soft_wrap=True)
    if rep["flags"]:
        sys.exit(1)  # not typer.Exit: the root app runs with standalone_mode=False, which swallows its code
