"""Option groups (politune.cli.common): a command takes several options as one dataclass, and typer sees each
option spelt out, in place."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from politune.cli.common import OptionGroup, expand_option_groups


@dataclass(frozen=True)
class Window:
    width: int
    label: str | None


WindowGroupOption = OptionGroup(
    Window,
    dict(
        width=typer.Option(3, "--width", help="Window width."),
        label=typer.Option(None, "--label", help="Window label."),
    ),
)


def _app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @expand_option_groups
    def show(
        name: str = typer.Option("a", "--name", help="Name first."),
        window: Window = WindowGroupOption,
        loud: bool = typer.Option(False, "--loud", help="Loud last."),
    ) -> None:
        seen.append((name, window, loud))

    return app


def test_a_group_is_spelt_out_in_place_and_packed_into_its_dataclass():
    seen: list = []
    app = _app(seen)
    res = CliRunner().invoke(app, ["--width", "7", "--loud"])
    assert res.exit_code == 0, res.output
    assert seen == [("a", Window(7, None), True)]
    CliRunner().invoke(app, ["--label", "x", "--name", "b"])
    assert seen[-1] == ("b", Window(3, "x"), False)
    text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    flags = [f for f in ("--name", "--width", "--label", "--loud") if f in text]
    assert flags == ["--name", "--width", "--label", "--loud"]
    assert sorted(flags, key=text.index) == flags and "Window width." in text


def test_a_group_must_name_every_field_in_order():
    with pytest.raises(ValueError, match="Window"):
        OptionGroup(Window, dict(label=typer.Option(None), width=typer.Option(3)))
    with pytest.raises(ValueError, match="Window"):
        OptionGroup(Window, dict(width=typer.Option(3)))
