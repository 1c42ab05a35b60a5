"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

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
