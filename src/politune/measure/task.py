"""An evaluation is a :class:`Task`: a dataset of :class:`Sample` s, a solver (how one target answers them) and a
scorer (what one target's answers are worth), plus ``summarize`` (the result file over all targets).
:func:`run_tasks` runs tasks over targets; it knows nothing about any particular measure.

Read top to bottom::

    for each target (base model loaded once, adapters attached in turn by ``iter_loaded``; or over HTTP):
        for each task:  outputs = task.solver.solve(ctx, task.dataset)       # a backend answers
    for each task:      entries = [task.scorer.score(target, task.dataset, outputs) for each target]
                        results[task.name] = task.summarize(entries)       # a typed result (measure/results.py)

Solvers receive a :class:`Context` with the target and its backend (``LocalBackend`` or ``HTTPBackend`` of
``politune.measure.compass.backends``: ``generate``, ``option_logprobs``, and ``perplexities`` locally). Scoring
runs after every target has answered, so a judge or classifier never competes with the model being measured.
The shipped solvers are in ``politune.measure.solvers``; the compass and the side-effect measures are tasks
(``politune.measure.compass.task``, ``politune.measure.effects``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar, Unpack

from pydantic import Field

from politune.config import Config
from politune.errors import PolituneError
from politune.measure.targets import Target

if TYPE_CHECKING:
    from politune.measure.compass.backends import Backend
    from politune.measure.judge import Judge
    from politune.measure.results import ResultT

log = logging.getLogger("politune")

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)  # a Scorer only produces entries
R = TypeVar("R")  # a task's result: what its summarize makes of every target's entries
R_co = TypeVar(
    "R_co", covariant=True
)  # a Task only produces its result (a Task[E, TopicsResult] is a Task[E, Result])


@dataclass(frozen=True)
class Sample:
    """One dataset item: ``input`` is what the solver is given (a question, a passage, a statement)."""

    id: str
    input: str
    kind: str = (
        "sample"  # which set it belongs to ("topic", "qa", "passage", "item"): solvers route and cache on it
    )
    data: Any = None  # the typed item it came from (TopicQuestion, QAItem, compass Item, ...)


# Prompts answered per forward pass by default. Decoding is bound by reading the weights once per step, so many
# rows per step cost little more than a few: on 2 CPU cores (smollm2, bf16) 64 rows answered the side-effect
# questions 1.8x faster than 8 and the compass's open track 1.3x faster than 16 (docs/benchmarks.md).
GENERATION_BATCH = 64


@dataclass
class Context:
    """What a solver works with for one target."""

    target: Target
    backend: Backend
    batch_size: int = GENERATION_BATCH
    on_progress: Callable[[str, int], None] | None = None

    def progress(self, n: int) -> None:
        if self.on_progress is not None:
            self.on_progress(self.target.name, n)


class Solver(Protocol):
    @property
    def name(self) -> str:
        """How answers are produced (recorded; part of the answer-cache key); an attribute or a property."""
        ...

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> Any:
        """What ``ctx.target`` produced for ``samples`` (most solvers: one output per sample, in order)."""
        ...


class Scorer(Protocol[E_co]):
    @property
    def name(self) -> str: ...

    def score(self, target: Target, samples: Sequence[Sample], outputs: Any) -> E_co:
        """One target's entry of the result (typically a ``*Entry`` model of ``measure/results.py``)."""
        ...


@dataclass(frozen=True)
class ScoreWith(Generic[E]):
    """A :class:`Scorer` made of a name and a function of one target's answers (as inspect-ai builds scorers)."""

    name: str
    fn: Callable[[Target, Sequence[Sample], Any], E]

    def score(self, target: Target, samples: Sequence[Sample], outputs: Any) -> E:
        return self.fn(target, samples, outputs)


class RunSettings(Protocol):
    """What running a task needs of a measure's settings."""

    device: str
    dtype: str
    batch_size: int


class AnswerOptions(Config):
    """How the targets answer a probe's prompts: the options the issues, behaviour, evenhand and winrate probes
    share (their ``*Options`` add their own; CLI flags of the same names)."""

    max_new_tokens: int = Field(96, ge=1)
    batch_size: int = Field(GENERATION_BATCH, ge=1)
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class Scored(Generic[E]):
    """One target's scored entry, with what the runner observed while it answered."""

    target: Target
    entry: E
    seconds: float  # wall time of this target's solving
    backend: dict[str, Any] = field(default_factory=dict)  # backend.describe()


@dataclass(frozen=True)
class Task(Generic[E, R_co]):
    """``Task[E, R]``: its scorer makes an ``E`` of each target's answers, its ``summarize`` an ``R`` of them all."""

    name: str  # the result file is ``<name>.json``
    dataset: Sequence[Sample]
    solver: Solver
    scorer: Scorer[E]
    summarize: Callable[[list[Scored[E]]], R_co]  # entries of every target -> the typed result


class Reach(TypedDict, total=False):
    """Where answers come from and who hears of them: what every run and every probe may be given."""

    base_url: str | None  # answer through an OpenAI-compatible server (default: load the models)
    on_progress: Callable[[str, int], None] | None  # called with (target name, n) as solvers finish n answers


class RunOptions(Reach, total=False):
    """How :func:`run_tasks` and :func:`run_task` reach the targets (every key optional)."""

    device: str  # "auto" (default), "cpu", "cuda", ...
    dtype: str  # "auto" (default), "bfloat16", ...
    batch_size: int  # prompts per forward pass (default GENERATION_BATCH)
    on_target: Callable[[str], None] | None  # called with a target's name as it starts


class ProbeOptions(Reach, total=False):
    """The keyword options of a probe's ``measure_*`` function (every key optional); how the targets answer
    (device, dtype, batch size, tokens) is in the probe's settings."""

    out_dir: str | Path | None  # write <task name>.json there; answers are logged to answers.jsonl and reused


class JudgedOptions(ProbeOptions, total=False):
    """:class:`ProbeOptions` of a probe that an LLM judge can rate."""

    judge: Judge | None  # rates what the probe's rubric asks (default: the offline signals alone)


# One target's answers to one task: the target, the solver's output, its seconds, the backend's description.
_Answered = tuple[Target, Any, float, dict[str, Any]]


def _backends(
    targets: Sequence[Target], base_url: str | None, device: str, dtype: str, batch_size: int
) -> Iterator[tuple[Target, Backend]]:
    """``(target, backend)`` per target: a local model (base loaded once, adapters swapped) or a server."""
    from politune.measure.compass.backends import HTTPBackend, LocalBackend

    if base_url:
        for t in targets:
            if t.adapter:
                raise PolituneError(
                    f"target {t.name}: adapters cannot be attached over HTTP; serve the adapter "
                    "and pass its served name as the model"
                )
            yield t, HTTPBackend(base_url, t.model, system=t.system)
        return
    from politune.measure.targets import iter_loaded

    for t, model, tok in iter_loaded(targets, device=device, dtype=dtype):
        yield t, LocalBackend(model, tok, system=t.system, batch_size=batch_size)


def run_tasks(
    tasks: Sequence[Task[Any, Any]], targets: Sequence[Target], **options: Unpack[RunOptions]
) -> dict[str, Any]:
    """Run every task on every target; returns ``{task.name: task.summarize(...)}`` in task order (results of
    different types: :func:`run_task` types the one of a single task).

    ``options`` (:class:`RunOptions`): ``base_url`` answers through an OpenAI-compatible server (the target's
    ``model`` is the served name) instead of loading models; ``device``, ``dtype``, ``batch_size`` for local
    models. ``on_target(name)`` is called as a target starts, ``on_progress(name, n)`` as solvers finish ``n``
    answers.
    """
    answered = _answer(tasks, targets, **options)
    return {task.name: _result(task, answered[task.name]) for task in tasks}


def run_task(task: Task[Any, R], targets: Sequence[Target], **options: Unpack[RunOptions]) -> R:
    """:func:`run_tasks` for one task: its result, typed."""
    return _result(task, _answer([task], targets, **options)[task.name])


def _answer(
    tasks: Sequence[Task[Any, Any]],
    targets: Sequence[Target],
    base_url: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = GENERATION_BATCH,
    on_target: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, list[_Answered]]:
    """Every target's answers to every task, by task name (a base model is loaded once per run of targets)."""
    if not targets:
        raise PolituneError("nothing to measure: no targets")
    if not tasks:
        raise PolituneError("nothing to measure: no tasks")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise PolituneError(f"task names must be unique, got {names}")
    outputs: dict[str, list[_Answered]] = {t.name: [] for t in tasks}
    for target, backend in _backends(targets, base_url, device, dtype, batch_size):
        if on_target is not None:
            on_target(target.name)
        ctx = Context(target, backend, batch_size, on_progress)
        info = backend.describe()
        for task in tasks:
            t0 = time.perf_counter()
            out = task.solver.solve(ctx, task.dataset)
            sec = time.perf_counter() - t0
            log.info("%s: %s answered %d samples in %.1fs", task.name, target.name, len(task.dataset), sec)
            outputs[task.name].append((target, out, sec, info))
    return outputs


def _result(task: Task[Any, R], answered: list[_Answered]) -> R:
    """Score each target's answers (after all have answered), then summarize them into the task's result."""
    return task.summarize(
        [Scored(t, task.scorer.score(t, task.dataset, out), sec, info) for t, out, sec, info in answered]
    )


def run_record(settings: Config, scored: Sequence[Scored[Any]]) -> dict[str, Any]:
    """What every result records: provenance, the settings and each target's answering time."""
    from politune.provenance import provenance

    return {
        "provenance": provenance(),
        "settings": settings.model_dump(mode="json"),
        "generation_seconds": {s.target.name: round(s.seconds, 2) for s in scored},
    }


def run_probe(
    task_for: Callable[[Judge | None, Path | None], Task[Any, ResultT]],
    targets: Sequence[Target],
    settings: RunSettings,
    **options: Unpack[JudgedOptions],
) -> ResultT:
    """Run the task ``task_for(judge, answer log or None)`` on ``targets``; with ``out_dir``, log the answers to
    ``answers.jsonl`` there (reused on a re-run) and write ``<task name>.json``. Returns the task's result."""
    from politune.measure.results import write_result

    if not targets:
        raise PolituneError("nothing to measure: no targets")
    out_dir = options.get("out_dir")
    out = Path(out_dir) if out_dir is not None else None
    task = task_for(options.get("judge"), out / "answers.jsonl" if out is not None else None)
    res = run_task(
        task,
        targets,
        base_url=options.get("base_url"),
        on_progress=options.get("on_progress"),
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
    )
    if out is not None:
        write_result(res, out / f"{task.name}.json")
    return res
