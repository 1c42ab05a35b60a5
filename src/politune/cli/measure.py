"""``politune measure ...``: the compass (``measure_compass.py``) and judges / side-effects
(``measure_effects.py``) add their commands to one ``measure`` sub-app."""

from __future__ import annotations

import typer

from politune.cli import measure_compass, measure_effects, measure_judge

measure_app = typer.Typer(
    help="Measure where a model sits (compass, topics) and what tuning cost it (quality, toxicity, refusal).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    measure_compass.add_commands(measure_app)
    measure_effects.add_commands(measure_app)
    measure_judge.add_commands(measure_app)
    app.add_typer(measure_app, name="measure")
