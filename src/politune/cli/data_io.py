"""What the ``politune data`` commands share: the common options and reading / writing records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from politune.cli.common import err_console
from politune.data.readers import MAPPABLE

if TYPE_CHECKING:
    from politune.data.schema import Record
    from politune.models.loading import Tokenizer

SrcArgument = typer.Argument(
    ..., help="builtin:NAME[:SPLIT], hf:OWNER/NAME, a .jsonl/.csv/.parquet/.json file or a folder."
)
OutOption = typer.Option(..., "--out", "-o", help="Output file (.jsonl, .jsonl.gz, .csv or .parquet).")
SchemaOption = typer.Option("auto", "--schema", help="auto | politune | shp | webgpt.")
MapOption = typer.Option(
    None,
    "--map",
    help=f"Column mapping FIELD=COLUMN[,FIELD=COLUMN...] (repeatable); fields: {', '.join(MAPPABLE)}.",
)
SplitOption = typer.Option(
    None,
    "--split",
    help="train / heldout for builtin sets; hub / folder split for hf: ids and folders; a meta.split filter for files.",
)
SeedOption = typer.Option(0, "--seed", help="Random seed.")


def parse_mapping(values: list[str] | None) -> dict[str, str]:
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


def load_tokenizer_named(name: str | None) -> Tokenizer | None:
    if not name:
        return None
    from politune.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(name))


def load_source(
    src: str, split: str | None = None, schema: str = "auto", mapping: list[str] | None = None
) -> list[Record]:
    from politune.data import load

    return load(src, split=split, schema=schema, mapping=parse_mapping(mapping))


def write_records(items: Sequence[Record], out: Path, summary: dict[str, Any]) -> None:
    from politune.data import save, summary_path

    save(items, out, summary=summary)
    err_console.print(
        f"wrote {len(items)} rows to {out} (summary: {summary_path(out)})", highlight=False, markup=False
    )
