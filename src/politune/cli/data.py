"""CLI for the `data` pillar. Commands are added here by the data pillar and only call its public API."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this pillar's commands to the root app (filled in as the pillar lands)."""
