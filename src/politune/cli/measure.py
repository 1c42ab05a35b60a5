"""``politune measure ...``: the compass (``measure_compass.py``), judges / side-effects (``measure_effects.py``),
the probes (``measure_probes.py``: evenhand, safety; ``measure_issues.py``: issues, behaviour) and the
ComPreD-style measures (``measure_compred.py``: winrate, reward-accuracy) add their commands to one ``measure``
sub-app."""

from __future__ import annotations

import typer

from politune.cli import (
    measure_compass,
    measure_compred,
    measure_effects,
    measure_issues,
    measure_judge,
    measure_probes,
)

measure_app = typer.Typer(
    help="Measure where a model sits (compass, topics), what tuning cost it (quality, toxicity, refusal), "
    "whether it treats both sides alike (evenhand), whether it became easier to misuse (safety), which side its "
    "writing takes on political issues (issues), how it answers charged questions (behaviour), which answers a "
    "community would prefer (winrate) and whether a DPO adapter's preference holds on held-out pairs "
    "(reward-accuracy).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    for part in (
        measure_compass,
        measure_effects,
        measure_judge,
        measure_probes,
        measure_issues,
        measure_compred,
    ):
        part.add_commands(measure_app)
    app.add_typer(measure_app, name="measure")
