"""Reading and writing tables: JSONL (canonical), CSV, Parquet, ``save_to_disk`` folders and hub datasets.

Readers return :class:`RawRow` s, each with a location (``file:line``; ``file:N`` = N-th row for Parquet and
hub data) so that every problem can be reported where it is. File-level problems (missing, empty, binary,
UTF-16, unreadable Parquet, unknown suffix) raise :class:`~politune.errors.PolituneError` with one line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.data.validate import type_name
from politune.errors import PolituneError
from politune.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".parquet")
_SKIP_IN_DIRS = (".rejected.jsonl", ".summary.json")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass
class RawRow:
    """One source row: ``row`` is the parsed object, or ``None`` with ``error`` = (field, problem)."""

    loc: str
    row: dict[str, Any] | None
    error: tuple[str, str] | None = None
    raw: str | None = None

    def problem(self) -> tuple[str, str]:
        """``(field, problem)`` of an unreadable row (one read with ``row`` None)."""
        if self.error is None:
            raise ValueError(f"{self.loc}: the row was read; it has no problem to report")
        return self.error


def suffix_of(path: str | os.PathLike[str]) -> str:
    name = Path(path).name.lower()
    for s in TABLE_SUFFIXES:
        if name.endswith(s):
            return s
    return Path(path).suffix.lower()


def _sniff(path: Path, head: bytes, what: str) -> None:
    if not head:
        raise PolituneError(f"{path}: empty file; expected {what}")
    if head.startswith(_UTF16_BOMS):
        raise PolituneError(f"{path}: file is UTF-16 (byte-order mark {head[:2].hex()}); expected {what}")
    if b"\x00" in head:
        raise PolituneError(
            f"{path}: binary file (NUL bytes in the first {len(head)} bytes); expected {what}"
        )


def _open_bytes(path: Path) -> bytes:
    if not path.exists():
        raise PolituneError(f"{path}: no such file")
    if not path.is_file():
        raise PolituneError(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise PolituneError(f"{path}: cannot read ({e})") from None
    return data


def read_jsonl_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    """JSON lines, one object per line; blank lines are skipped; a UTF-8 BOM at the start is accepted."""
    path = Path(path)
    data = _open_bytes(path)
    _sniff(path, data[:8192], "UTF-8 JSON lines")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    out: list[RawRow] = []
    loads = json.loads
    p = str(path)
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        loc = f"{p}:{lineno}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.append(
                RawRow(
                    loc,
                    None,
                    ("encoding", f"invalid UTF-8 at byte {e.start} of the line"),
                    raw.decode("utf-8", "replace"),
                )
            )
            continue
        try:
            obj = loads(text)
        except ValueError as e:
            msg = getattr(e, "msg", str(e))
            col = getattr(e, "colno", None)
            where = f", column {col}" if col else ""
            out.append(RawRow(loc, None, ("json", f"invalid JSON ({msg}{where})"), text[:2000]))
            continue
        if not isinstance(obj, dict):
            out.append(
                RawRow(loc, None, ("json", f"expected a JSON object, got {type_name(obj)}"), text[:2000])
            )
            continue
        out.append(RawRow(loc, obj))
    return _nonempty(out, path, "no rows (only blank lines); expected UTF-8 JSON lines")


def _nonempty(rows: list[RawRow], path: Path, problem: str) -> list[RawRow]:
    if not rows:
        raise PolituneError(f"{path}: {problem}")
    return rows


def read_json_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    """A ``.json`` file holding a list of objects (or ``{"data": [...]}``); rows are numbered from 1."""
    path = Path(path)
    data = _open_bytes(path)
    _sniff(path, data[:8192], "a JSON list of objects")
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise PolituneError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    except ValueError as e:
        raise PolituneError(
            f"{path}:{getattr(e, 'lineno', '?')}: json: invalid JSON ({getattr(e, 'msg', e)})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise PolituneError(f"{path}: expected a JSON list of objects, got {type_name(obj)}")
    if not obj:
        raise PolituneError(f"{path}: empty list; expected a JSON list of objects")
    return [
        RawRow(f"{path}:{i}", r)
        if isinstance(r, dict)
        else RawRow(
            f"{path}:{i}", None, ("json", f"expected a JSON object, got {type_name(r)}"), str(r)[:2000]
        )
        for i, r in enumerate(obj, 1)
    ]


def read_csv_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    """CSV with a header row; ``file:line`` is the line the row starts on. Cells are strings."""
    path = Path(path)
    data = _open_bytes(path)
    _sniff(path, data[:8192], "UTF-8 CSV with a header row")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolituneError(f"{path}:{line}: encoding: invalid UTF-8; expected a UTF-8 CSV file") from None
    csv.field_size_limit(1 << 30)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise PolituneError(f"{path}: empty file; expected UTF-8 CSV with a header row") from None
    except csv.Error as e:
        raise PolituneError(f"{path}:1: csv: {e}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise PolituneError(f"{path}:1: csv: empty header row; expected column names")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise PolituneError(f"{path}:1: csv: duplicate column name(s) {', '.join(dup)}")
    out: list[RawRow] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise PolituneError(f"{path}:{start}: csv: {e}") from None
        loc = f"{path}:{start}"
        start = reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != len(header):
            out.append(
                RawRow(
                    loc,
                    None,
                    ("csv", f"row has {len(cells)} fields, the header has {len(header)}"),
                    ",".join(cells)[:2000],
                )
            )
            continue
        out.append(RawRow(loc, dict(zip(header, cells, strict=True))))
    return _nonempty(out, path, "header only, no rows; expected UTF-8 CSV with a header row")


def read_parquet_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    import pyarrow.parquet as pq

    path = Path(path)
    data = _open_bytes(path)
    if not data:
        raise PolituneError(f"{path}: empty file; expected a Parquet file")
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise PolituneError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:200]})") from None
    rows = table.to_pylist()
    if not rows:
        raise PolituneError(f"{path}: Parquet file has no rows")
    return [RawRow(f"{path}:{i}", r) for i, r in enumerate(rows, 1)]


def _dataset_rows(ds: Dataset, label: str) -> list[RawRow]:
    rows = ds.to_list()
    if not rows:
        raise PolituneError(f"{label}: dataset has no rows")
    return [RawRow(f"{label}:{i}", r) for i, r in enumerate(rows, 1)]


def _pick_split(dd: DatasetDict, label: str, split: str | None) -> Dataset:
    names = list(dd.keys())
    if split is None:
        split = "train" if "train" in names else (names[0] if len(names) == 1 else None)
        if split is None:
            raise PolituneError(f"{label}: dataset has splits {', '.join(names)}; pick one with split=")
    if split not in names:
        raise PolituneError(f"{label}: no split {split!r}; available: {', '.join(names)}")
    return dd[split], split


def read_dir_rows(path: str | os.PathLike[str], split: str | None = None) -> tuple[list[RawRow], str | None]:
    """A ``save_to_disk`` folder (Dataset or DatasetDict), or a folder of table files read in name order.

    Returns ``(rows, split_used)``; ``split_used`` is the DatasetDict split taken, else ``None``.
    """
    path = Path(path)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        from datasets import load_from_disk

        try:
            ds = load_from_disk(str(path))
        except Exception as e:
            raise PolituneError(
                f"{path}: not a readable save_to_disk folder ({str(e).splitlines()[0][:200]})"
            ) from None
        if hasattr(ds, "keys"):
            ds, used = _pick_split(ds, str(path), split)
            return _dataset_rows(ds, f"{path}@{used}"), used
        return _dataset_rows(ds, str(path)), None
    try:
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and suffix_of(p) in TABLE_SUFFIXES
            and not p.name.endswith(_SKIP_IN_DIRS)
            and not p.name.startswith(".")
        )
    except OSError as e:
        raise PolituneError(f"{path}: cannot read the folder ({e.strerror or e})") from None
    if not files:
        raise PolituneError(
            f"{path}: folder holds no save_to_disk dataset and no {'/'.join(TABLE_SUFFIXES)} files"
        )
    rows: list[RawRow] = []
    for f in files:
        rows.extend(read_file_rows(f))
    return rows, None


def read_hub_rows(name: str, split: str | None = None, config: str | None = None) -> tuple[list[RawRow], str]:
    """A dataset from the Hugging Face hub (or a local dataset folder) via ``datasets.load_dataset``.

    Honours ``HF_HUB_OFFLINE``: offline and not cached gives one clear error.
    """
    if not (_HUB_NAME.match(name) or Path(name).is_dir()):
        raise PolituneError(f"hf:{name}: not a hub dataset id; expected hf:OWNER/NAME")
    from datasets import load_dataset

    split = split or "train"
    label = f"hf:{name}@{split}"
    try:
        ds = load_dataset(name, config, split=split)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        if offline:
            raise PolituneError(
                f"hf:{name}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"download it once with network access, or pass a local file ({first})"
            ) from None
        raise PolituneError(f"hf:{name}: could not load split {split!r} from the hub ({first})") from None
    return _dataset_rows(ds, label), split


def read_file_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    path = Path(path)
    sfx = suffix_of(path)
    if sfx in (".jsonl", ".jsonl.gz"):
        return read_jsonl_rows(path)
    if sfx == ".json":
        return read_json_rows(path)
    if sfx == ".csv":
        return read_csv_rows(path)
    if sfx == ".parquet":
        return read_parquet_rows(path)
    if not path.exists():
        raise PolituneError(f"{path}: no such file")
    raise PolituneError(
        f"{path}: unknown file type {sfx or '(no suffix)'!r}; expected "
        f"{', '.join(TABLE_SUFFIXES)}, a dataset folder, hf:OWNER/NAME or builtin:NAME"
    )


def read_rows(
    src: str | os.PathLike[str], split: str | None = None, hf_config: str | None = None
) -> tuple[list[RawRow], str | None]:
    """Rows of any table source except ``builtin:``: returns ``(rows, hub_or_folder_split_used)``."""
    s = str(src)
    if s.startswith("hf:"):
        return read_hub_rows(s[3:], split, hf_config)
    path = Path(s)
    if path.is_dir():
        return read_dir_rows(path, split)
    return read_file_rows(path), None


def read_table(src: str | os.PathLike[str], split: str | None = None) -> list[dict[str, Any]]:
    """Any table (JSONL / CSV / Parquet / JSON list / dataset folder / ``hf:OWNER/NAME``) as a list of dicts.

    For other pillars' corpora (posts, questions). A malformed row raises one ``file:line: field: problem``.
    ``split`` picks a hub or ``save_to_disk`` split (default ``train``).
    """
    rows, _ = read_rows(src, split)
    good = [r.row for r in rows if r.row is not None]
    bad = [r for r in rows if r.row is None]
    if bad:
        more = f" (+{len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
        field, problem = bad[0].problem()
        raise PolituneError(f"{bad[0].loc}: {field}: {problem}{more}")
    return good


# ---------------------------------------------------------------- writing


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


def table_bytes(rows: list[dict[str, Any]], suffix: str) -> bytes:
    """Serialize dict rows for ``suffix``: JSONL as is; CSV and Parquet JSON-encode nested values."""
    if suffix in (".jsonl", ".jsonl.gz"):
        data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8")
        return gzip.compress(data, mtime=0) if suffix == ".jsonl.gz" else data
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    if suffix == ".csv":
        csv_buf = io.StringIO(newline="")
        w = csv.writer(csv_buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in columns])
        return csv_buf.getvalue().encode("utf-8")
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {}
        for c in columns:
            vals = [r.get(c) for r in rows]
            if all(v is None or isinstance(v, str) for v in vals):
                arrays[c] = pa.array(vals, pa.string())
            elif all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in vals):
                arrays[c] = pa.array(vals)
            elif all(v is None or isinstance(v, bool) for v in vals):
                arrays[c] = pa.array(vals, pa.bool_())
            else:
                arrays[c] = pa.array([None if v is None else _cell(v) for v in vals], pa.string())
        parquet_buf = io.BytesIO()
        pq.write_table(pa.table(arrays), parquet_buf)
        return parquet_buf.getvalue()
    raise PolituneError(
        f"cannot write {suffix or '(no suffix)'!r}: expected .jsonl, .jsonl.gz, .csv or .parquet"
    )


def write_table(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write dict rows atomically; the format follows the suffix (.jsonl, .jsonl.gz, .csv, .parquet)."""
    path = Path(path)
    data = table_bytes(list(rows), suffix_of(path))
    try:
        return atomic_write_bytes(path, data)
    except OSError as e:
        raise PolituneError(f"{path}: cannot write ({e.strerror or e})") from None
