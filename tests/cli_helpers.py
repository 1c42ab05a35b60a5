"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"  # test data files, one folder per pillar
ROOT = TESTS.parent  # the repository


def run_cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the real ``politune`` entry point in-process: (exit code, stdout, stderr). Any uncaught exception
    (a traceback for the user) fails the test."""
    from politune.cli import main

    monkeypatch.setattr(sys, "argv", ["politune", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def fails_as_bad_input(args, pattern: str, monkeypatch, capsys) -> str:
    """Run ``politune ARGS`` and check it failed as bad input must: exit 2, one ``error:`` line matching the regex
    ``pattern``, no traceback. Returns stderr."""
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err
    return err


def rewrite_csv(src: Path, out: Path, cols: list[str] | None = None, row3: dict | None = None) -> Path:
    """``src`` (a CSV) written again to ``out`` with the columns ``cols`` (default: its own), its line 3 (the
    second row) updated with ``row3``."""
    import csv

    rows = list(csv.DictReader(src.read_text(encoding="utf-8").splitlines(keepends=True)))
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, cols or list(rows[0]), extrasaction="ignore")
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, **(row3 or {})} if i == 1 else r)
    return out


# Flags every headless-Chromium test starts the browser with: no sandbox as root, and nothing that reaches out
# to the network (this machine has none).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
