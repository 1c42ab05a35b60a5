"""Crash-safe file writing, hashing and safe names: the rules every long job follows.

- Outputs are written to a temporary sibling and renamed into place (``os.replace`` is atomic on POSIX), so a
  kill -9 or a full disk leaves either the old file or the new one, never half of one.
- Logs are append-only JSONL, one ``write`` + ``fsync`` per record; a torn last line is skipped on read.
- User-supplied names never become paths unchecked: :func:`safe_name` validates them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from politune.errors import PolituneError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def politune_home() -> Path:
    """Cache root: ``$POLITUNE_HOME`` or ``~/.cache/politune``."""
    return Path(os.environ.get("POLITUNE_HOME") or Path.home() / ".cache" / "politune")


def safe_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a plain file-name-safe token (letters, digits, '.', '_', '-'; no '..')."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise PolituneError(
            f"invalid {what} {name!r}: expected letters, digits, '.', '_' or '-' (no path parts)"
        )
    return name


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(
    path: str | os.PathLike[str], rows: list[dict[str, Any]] | Iterator[dict[str, Any]]
) -> Path:
    return atomic_write_text(
        path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    )


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temp sibling; on success swap it into ``path`` (replacing an old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON record as a line and fsync: an append-only log that survives kill -9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a crash tore the last record: end it so this one stays readable
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an append-only log written by :func:`append_jsonl`; a torn final line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn last line
            with contextlib.suppress(ValueError):
                rows.append(json.loads(raw))
    return rows


def parse_jsonl_objects(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    """Strictly parse a small JSONL file shipped with politune or given by a user: ``(line number, object)``
    per non-blank line; a bad line is a one-line error ``WHERE:LINE: ...``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise PolituneError(f"{where}:{n}: not valid JSON ({getattr(e, 'msg', e)})") from None
        if not isinstance(obj, dict):
            raise PolituneError(f"{where}:{n}: expected a JSON object")
        out.append((n, obj))
    return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike[str], pattern: str = "*") -> str:
    """Hash of every file under ``path`` (names and contents, sorted): a stable id for an adapter or dataset."""
    path = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob(pattern) if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
