"""The options the ``politune measure`` commands share: what is measured (:class:`TargetArgs`), by which
judge (:class:`JudgeArgs`), how answers are generated (:class:`GenerationArgs`, or :class:`AnswerArgs` with the
answer length and --base-url), each an option group that a command takes as one parameter
(:func:`~politune.cli.common.expand_option_groups`); the way the probe and ComPreD commands run
(:class:`ProbeCommand`) and print a value with its CI and a result table."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, Unpack

import typer

from politune.cli.common import (
    DeviceOption,
    DtypeOption,
    JsonOption,
    OptionGroup,
    ThreadsOption,
    console,
    expand_option_groups,
    run_and_show,
    set_threads,
)
from politune.measure.task import GENERATION_BATCH, JudgedOptions

if TYPE_CHECKING:
    from politune.config import Config
    from politune.measure import Judge, Target

SettingsT = TypeVar("SettingsT", bound="Config")
ResultT = TypeVar("ResultT")
SettingsT_contra = TypeVar("SettingsT_contra", bound="Config", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)

ModelOption = typer.Option(
    "smollm2-135m", "--model", "-m", help="Base model (registry name, local dir or hub id)."
)
AdapterOption = typer.Option(
    None, "--adapter", "-a", help="NAME=ADAPTER_DIR: also measure this LoRA adapter (repeatable)."
)
PersonaOption = typer.Option(
    None,
    "--persona",
    "-p",
    help="NAME=SYSTEM PROMPT: also measure the base model with this system prompt (repeatable).",
)
SystemOption = typer.Option(
    None, "--system", help="System prompt for the base and adapters (a persona keeps its own)."
)
JudgeOption = typer.Option(
    None,
    "--judge",
    help="LLM judge as URL/v1/MODEL (any OpenAI-compatible server); "
    "default: $POLITUNE_JUDGE_URL + $POLITUNE_JUDGE_MODEL if set, else the offline scorer.",
)
JudgeModelOption = typer.Option(None, "--judge-model", help="Judge model name when --judge is a bare URL.")
JudgeConcOption = typer.Option(4, "--judge-concurrency", help="Judge requests in flight.")
JudgeRateOption = typer.Option(None, "--judge-rate", help="Judge requests per second at most.")
JudgeCostOption = typer.Option(
    None, "--judge-cost", help="PROMPT,COMPLETION price per 1000 tokens (cost report)."
)
BatchOption = typer.Option(GENERATION_BATCH, "--batch-size", help="Prompts per forward pass.")
SeedOption = typer.Option(0, "--seed", help="Seed for generation and bootstrap CIs.")
BaseURLOption = typer.Option(
    None,
    "--base-url",
    help="Answer through an OpenAI-compatible server at this URL (targets' model = the served name) "
    "instead of loading the model.",
)
AnswerTokensOption = typer.Option(96, "--max-new-tokens", help="Answer length (tokens).")


def results_folder_option(folder: str, result_file: str) -> Any:
    """``--out``: the folder a measure writes ``result_file`` to (default ``runs/FOLDER``)."""
    return typer.Option(Path("runs") / folder, "--out", "-o", help=f"Output folder ({result_file}).")


def first_n_option(flag: str, what: str) -> Any:
    """``--FLAG N``: measure only the first N ``what`` of the set (they alternate economic / social)."""
    return typer.Option(
        None, flag, help=f"Only the first N {what} (alternating economic / social): a cheap subset."
    )


def only_these_option(flag: str, what: str, choices: tuple[str, ...]) -> Any:
    """``--FLAG a,b``: measure only the prompts of these ``what`` (comma-separated, out of ``choices``)."""
    return typer.Option(None, flag, help=f"Only these {what}, comma-separated ({','.join(choices)}).")


TopicsNOption = first_n_option("--topics", "topics")


@dataclass(frozen=True)
class TargetArgs:
    """What is measured: the base model, its adapters and personas, a system prompt for all."""

    model: str
    adapter: list[str] | None
    persona: list[str] | None
    system: str | None

    def build(self) -> list[Target]:
        from politune.measure import build_targets

        return build_targets(self.model, self.adapter, self.persona, self.system)


@dataclass(frozen=True)
class JudgeArgs:
    """The LLM judge, as given on the command line."""

    judge: str | None
    judge_model: str | None
    judge_concurrency: int
    judge_rate: float | None
    judge_cost: str | None

    def build(self) -> Judge | None:
        """The judge; None (the offline scorer) without --judge and without $POLITUNE_JUDGE_URL +
        $POLITUNE_JUDGE_MODEL."""
        from politune.client import ClientOptions
        from politune.errors import PolituneError
        from politune.measure import Judge, parse_judge_spec

        if self.judge is None and not (
            os.environ.get("POLITUNE_JUDGE_URL") and os.environ.get("POLITUNE_JUDGE_MODEL")
        ):
            return None
        url, model = parse_judge_spec(self.judge, self.judge_model) if self.judge else (None, None)
        cost_pair = None
        if self.judge_cost:
            try:
                p, c = (float(x) for x in self.judge_cost.split(","))
            except ValueError:
                raise PolituneError(
                    f"--judge-cost {self.judge_cost!r}: expected PROMPT,COMPLETION prices per 1k tokens"
                ) from None
            cost_pair = (p, c)
        client = ClientOptions(
            concurrency=self.judge_concurrency, rate_limit=self.judge_rate, cost_per_1k=cost_pair
        )
        return Judge(url, model, client=client)


@dataclass(frozen=True)
class GenerationArgs:
    """How the answers are generated (the settings' fields of the same names)."""

    batch_size: int
    seed: int
    device: str
    dtype: str
    threads: int  # torch's CPU threads for this process (set_threads), not a setting of the measure

    def settings(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if name != "threads"}


TargetGroupOption: Any = OptionGroup(
    TargetArgs, dict(model=ModelOption, adapter=AdapterOption, persona=PersonaOption, system=SystemOption)
)
JudgeGroupOption: Any = OptionGroup(
    JudgeArgs,
    dict(
        judge=JudgeOption,
        judge_model=JudgeModelOption,
        judge_concurrency=JudgeConcOption,
        judge_rate=JudgeRateOption,
        judge_cost=JudgeCostOption,
    ),
)
GenerationGroupOption: Any = OptionGroup(
    GenerationArgs,
    dict(
        batch_size=BatchOption, seed=SeedOption, device=DeviceOption, dtype=DtypeOption, threads=ThreadsOption
    ),
)


@dataclass(frozen=True)
class AnswerArgs:
    """How the targets answer a probe's prompts: the answer length, the generation settings, and where (a server
    at --base-url, else the model loaded here)."""

    max_new_tokens: int
    batch_size: int
    seed: int
    device: str
    dtype: str
    threads: int  # as GenerationArgs.threads
    base_url: str | None

    def settings(self) -> dict[str, Any]:
        """The settings' fields of the same names (all but base_url and threads)."""
        return {name: value for name, value in asdict(self).items() if name not in ("base_url", "threads")}


AnswerGroupOption: Any = OptionGroup(
    AnswerArgs,
    dict(max_new_tokens=AnswerTokensOption, **GenerationGroupOption.options, base_url=BaseURLOption),
)


class ProbeMeasure(Protocol[SettingsT_contra, ResultT_co]):
    """A probe's measure function (``measure_evenhand``, ``measure_issues``, ...)."""

    def __call__(
        self, targets: list[Target], settings: SettingsT_contra, /, **options: Unpack[JudgedOptions]
    ) -> ResultT_co: ...


@dataclass(frozen=True)
class ProbeCommand(Generic[SettingsT, ResultT]):
    """What a probe command runs: the measure, its settings model, and how its result is summed up for --json
    and shown as tables; ``name`` names the command in errors."""

    name: str
    measure: ProbeMeasure[SettingsT, ResultT]
    settings: type[SettingsT]
    summary: Callable[[ResultT, float], dict[str, Any]]
    show: Callable[[ResultT, Path, float], None]

    def run(
        self,
        measured: list[Target],
        options: dict[str, Any],
        judge: JudgeArgs,
        answering: AnswerArgs,
        out: Path,
        json_out: bool,
    ) -> None:
        """Validate the command's ``options`` with the answering settings as the measure's settings, build the
        judge, measure the ``measured`` targets under a progress bar and print the result (JSON with --json)."""
        from politune.config import validate_config

        opts = options | answering.settings()
        settings = validate_config(self.settings, opts, f"politune measure {self.name} options")
        set_threads(answering.threads)
        j = judge.build()
        run_and_show(
            lambda cb: self.measure(
                measured, settings, judge=j, out_dir=out, base_url=answering.base_url, on_progress=cb
            ),
            self.summary,
            self.show,
            out,
            json_out,
        )


def probe_command(
    name: str, load: Callable[[], ProbeCommand[Any, Any]]
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Decorator that makes the ``politune measure NAME`` command of a probe out of ``own_settings``, a function
    whose parameters are the probe's own options (typer-style, with their ``typer.Option`` defaults) and which
    returns the measure's settings from their values; its docstring is the command's help. The command takes,
    in this order, the target and judge options, ``--out`` (default ``runs/NAME``, where NAME.json goes), the
    probe's own options, the answering options and ``--json``; it runs the :class:`ProbeCommand` that ``load``
    returns (``load`` imports the measure only when the command runs)."""
    keyword = inspect.Parameter.KEYWORD_ONLY

    def decorate(own_settings: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        out_option = results_folder_option(name, f"{name}.json")
        own = inspect.signature(own_settings, eval_str=True).parameters.values()
        parameters = [
            inspect.Parameter("targets", keyword, default=TargetGroupOption, annotation=TargetArgs),
            inspect.Parameter("judge", keyword, default=JudgeGroupOption, annotation=JudgeArgs),
            inspect.Parameter("out", keyword, default=out_option, annotation=Path),
            *(p.replace(kind=keyword) for p in own),
            inspect.Parameter("answering", keyword, default=AnswerGroupOption, annotation=AnswerArgs),
            inspect.Parameter("json_out", keyword, default=JsonOption, annotation=bool),
        ]

        def command(
            targets: TargetArgs,
            judge: JudgeArgs,
            out: Path,
            answering: AnswerArgs,
            json_out: bool,
            **own_values: Any,
        ) -> None:
            measured = targets.build()
            load().run(measured, own_settings(**own_values), judge, answering, out, json_out)

        command.__name__ = command.__qualname__ = own_settings.__name__
        command.__doc__ = own_settings.__doc__
        command.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
        return expand_option_groups(command)

    return decorate


def add_commands_with_docs(measure_app: typer.Typer, commands: dict[str, Callable[..., None]]) -> None:
    """Add each command to the ``measure`` sub-app under its name, its docstring (white space folded) as its
    help."""
    for name, command in commands.items():
        measure_app.command(name, help=" ".join((command.__doc__ or "").split()))(command)


def split_csv(value: str | None) -> list[str] | None:
    """``a, b,c`` -> ``["a", "b", "c"]``; None for no value."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def fmt_estimate(d: Any) -> str:
    """A SideAsymmetry / DiffCI / MeanCI as ``value [lo, hi]``."""
    v = getattr(d, "diff", None) if hasattr(d, "diff") else getattr(d, "mean", None)
    if d is None or v is None:
        return "-"
    return f"{v:+.3f} {d.ci.fmt(3)}" if hasattr(d, "diff") else f"{v:.3f} {d.ci.fmt(3)}"


def print_result_table(
    table: Any, result_file: str, out: Path, wall: float, doc: str = "docs/probes.md"
) -> None:
    console.print(table)
    console.print(f"wrote {result_file} to {out} ({wall} s); what each number can and cannot tell: {doc}")
