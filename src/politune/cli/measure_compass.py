"""`politune measure` commands from the compass part of the measure pillar."""

from __future__ import annotations

import typer


def add_commands(measure_app: typer.Typer) -> None:
    """Add this part's commands to the `measure` sub-app (filled in as the part lands)."""
