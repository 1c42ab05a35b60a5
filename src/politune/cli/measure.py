"""CLI for the `measure` pillar. Commands are added here by the measure pillar and only call its public API."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this pillar's commands to the root app (filled in as the pillar lands)."""
