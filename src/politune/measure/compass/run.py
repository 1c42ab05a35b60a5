"""The compass as a task (``politune.measure.task``), ``measure_compass`` that runs it over targets, and the fast
evaluator the tuner calls every N steps.

=========  ============================  ===============================================  =========================
task       dataset                       solver                                           scorer
=========  ============================  ===============================================  =========================
compass    the instrument's items        :class:`CompassTracks`: the requested tracks     :class:`CompassScore`:
                                         (log-prob, choice, open) on a local or HTTP       per-axis scores with
                                         backend                                          cluster-bootstrap CIs,
                                                                                          diagnostics, agreement
=========  ============================  ===============================================  =========================

``summarize`` then compares every target with the first one (usually ``base``) per track and axis, with a paired
CI, and builds the typed :class:`~politune.measure.results.CompassResult` (compass.json).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from politune.config import Config, validate_config
from politune.errors import PolituneError
from politune.measure.compass.backends import LocalBackend
from politune.measure.compass.diagnostics import agreement, content_sensitivity, track_diagnostics
from politune.measure.compass.instrument import BUILTIN, Instrument, load_instrument
from politune.measure.compass.prompts import Templates
from politune.measure.compass.scoring import N_BOOT, compare_axis, item_values, score_axis
from politune.measure.compass.tracks import (
    DEFAULT_VARIANTS,
    ClosedForm,
    Decoding,
    TrackRun,
    run_choice,
    run_logprob,
    run_open,
)
from politune.measure.results import CompassEntry, CompassResult, TargetInfo, write_result
from politune.measure.targets import Target
from politune.measure.task import GENERATION_BATCH, Context, Sample, Scored, Task, run_task
from politune.measure.validate_judge import validated_accuracy

if TYPE_CHECKING:
    from politune.measure.compass.backends import Backend
    from politune.measure.scorer import OpenScorer
    from politune.models.loading import CausalLM, Tokenizer

log = logging.getLogger("politune")

TRACKS = ("logprob", "choice", "open")


class CompassOptions(Config):
    """How the compass is measured, apart from the tracks and the seed: a study's ``measure.compass.options``
    (unknown keys are rejected). Defaults are the documented ones."""

    variants: tuple[str, ...] = DEFAULT_VARIANTS  # closed-form tracks: text, paraphrases, negation
    open_variants: tuple[str, ...] = ("text",)  # open track: free answers are costly; the item text only
    orders: tuple[str, ...] = ("forward", "reversed")
    calibrate: bool = True  # log-prob: divide out the content-free option prior
    choice_max_new_tokens: int = Field(12, ge=1)
    open_max_new_tokens: int = Field(80, ge=1)
    temperature: float = Field(
        0.0, ge=0.0
    )  # choice/open decoding; > 0 samples ``samples`` answers per prompt
    samples: int = 1
    batch_size: int = Field(GENERATION_BATCH, ge=1)  # prompts per forward pass
    n_boot: int = Field(N_BOOT, ge=1)
    items: int | None = Field(None, ge=1)  # use a balanced subset of this many items (None: all)
    templates: Templates = Templates()
    keep_answers: bool = False  # also store every generated answer in compass.json


class CompassSettings(CompassOptions):
    """Everything that decides a compass result (recorded in ``settings``)."""

    tracks: tuple[str, ...] = ("logprob", "choice", "open")
    seed: int = 0

    def check(self) -> None:
        bad = [t for t in self.tracks if t not in TRACKS]
        if bad or not self.tracks:
            raise PolituneError(
                f"--tracks: unknown track(s) {bad}; expected a comma list of {', '.join(TRACKS)}"
            )
        for v in (*self.variants, *self.open_variants):
            if v not in DEFAULT_VARIANTS:
                raise PolituneError(f"variant {v!r}: expected one of {', '.join(DEFAULT_VARIANTS)}")
        for o in self.orders:
            if o not in ("forward", "reversed"):
                raise PolituneError(f"order {o!r}: expected forward and/or reversed")
        if self.samples < 1 or self.batch_size < 1:
            raise PolituneError("samples and batch_size must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracks": list(self.tracks),
            "seed": self.seed,
            "variants": list(self.variants),
            "open_variants": list(self.open_variants),
            "orders": list(self.orders),
            "calibrate": self.calibrate,
            "items": self.items,
            "n_boot": self.n_boot,
            "decoding": {
                "choice_max_new_tokens": self.choice_max_new_tokens,
                "open_max_new_tokens": self.open_max_new_tokens,
                "temperature": self.temperature,
                "samples": self.samples,
                "greedy": self.temperature == 0,
            },
            "templates": self.templates.to_dict(),
        }


def default_scorer() -> OpenScorer:
    """The open track's default reader: the offline agreement reader (an answer's lean = the item's key x its
    agreement with the proposition; docs/judges.md), validated on the gold set's compass answers."""
    from politune.measure.agreement import AgreementReader

    return AgreementReader()


def run_tracks(
    backend: Backend, inst: Instrument, s: CompassSettings, scorer: OpenScorer | None = None
) -> dict[str, TrackRun]:
    runs: dict[str, TrackRun] = {}
    with _choice_from_logprob_pass(backend, s):
        for name in s.tracks:
            t0 = time.perf_counter()
            runs[name] = _run_track(name, backend, inst, s, scorer)
            runs[name].settings["seconds"] = round(time.perf_counter() - t0, 2)  # reported apart from results
            log.info(
                "%s track: %d prompts in %.1fs", name, len(runs[name].observations), time.perf_counter() - t0
            )
    return runs


def _choice_from_logprob_pass(backend: Backend, s: CompassSettings) -> contextlib.AbstractContextManager[Any]:
    """When the log-prob track runs before a greedy choice track, they ask the same closed-form prompts: a
    local backend then answers them while it scores them, and the choice track reads those answers instead of
    encoding all its prompts again (``LocalBackend.answer_too``; the choice track's time drops to ~0 and the
    log-prob track's includes the decoding)."""
    tracks = list(s.tracks)
    answer_too = getattr(backend, "answer_too", None)
    if (
        answer_too is None
        or s.temperature > 0
        or not {"logprob", "choice"} <= set(tracks)
        or tracks.index("logprob") > tracks.index("choice")
    ):
        return contextlib.nullcontext()
    cm: contextlib.AbstractContextManager[Any] = answer_too(s.choice_max_new_tokens)
    return cm


def _run_track(
    name: str,
    backend: Backend,
    inst: Instrument,
    s: CompassSettings,
    scorer: OpenScorer | None,
) -> TrackRun:
    form = ClosedForm(s.templates, s.variants, s.orders)
    if name == "logprob":
        return run_logprob(backend, inst, form, s.calibrate)
    if name == "choice":
        return run_choice(
            backend, inst, form, Decoding(s.choice_max_new_tokens, s.temperature, s.samples, s.seed)
        )
    return run_open(
        backend,
        inst,
        s.templates,
        scorer if scorer is not None else default_scorer(),
        s.open_variants,
        Decoding(s.open_max_new_tokens, s.temperature, s.samples, s.seed),
    )


def summarize_target(inst: Instrument, runs: dict[str, TrackRun], s: CompassSettings) -> dict[str, Any]:
    """One ``models[]`` entry (without ``target``) from the runs of one target."""
    tracks: dict[str, dict[str, Any]] = {}
    diags: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        vals = item_values(inst, run.observations)
        d = track_diagnostics(inst, run.observations)
        entry: dict[str, Any] = {
            a: score_axis(inst, vals, a, seed=s.seed, n_boot=s.n_boot) for a in inst.axes
        }
        entry["content_sensitivity"] = content_sensitivity(run.observations) if name == "logprob" else None
        entry["refusal_rate"] = d["refusal_rate"]
        entry["counts"] = d["counts"]
        if run.prior is not None:
            entry["option_prior"] = run.prior
        tracks[name] = entry
        diags[name] = d
    primary = next(iter(runs))
    diagnostics = {k: v for k, v in diags[primary].items() if k != "counts"}
    diagnostics["track"] = primary
    diagnostics["by_track"] = {n: {k: v for k, v in d.items() if k != "counts"} for n, d in diags.items()}
    rates, items = agreement(inst, {n: r.observations for n, r in runs.items()})
    return {
        "tracks": tracks,
        "diagnostics": diagnostics,
        "agreement": rates,
        "items": items,
        "timing": {n: r.settings.get("seconds") for n, r in runs.items()},
    }


# ------------------------------------------------------------------------------------------------ the task


def item_samples(inst: Instrument) -> list[Sample]:
    return [Sample(it.id, it.text, "item", it) for it in inst.items]


@dataclass(frozen=True)
class CompassTracks:
    """Solver: run the requested tracks on the items (one :class:`TrackRun` per track)."""

    inst: Instrument
    settings: CompassSettings
    scorer: OpenScorer | None = None  # the open track's

    @property
    def name(self) -> str:
        return "compass-tracks(" + ", ".join(self.settings.tracks) + ")"

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> dict[str, TrackRun]:
        inst = self.inst
        if [s.id for s in samples] != [it.id for it in inst.items]:
            inst = dataclasses.replace(inst, items=tuple(s.data for s in samples))
        return run_tracks(ctx.backend, inst, self.settings, self.scorer)


@dataclass
class CompassScored:
    entry: CompassEntry
    values: dict[str, dict[str, list[float]]]  # track -> item id -> observation values (for comparisons)
    track_settings: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class CompassScore:
    """Scorer: per-axis scores with CIs, diagnostics and agreement between tracks for one target."""

    inst: Instrument
    settings: CompassSettings
    name: str = "compass-score"

    def score(self, target: Target, samples: Sequence[Sample], runs: dict[str, TrackRun]) -> CompassScored:
        entry = {"target": TargetInfo.of(target), **summarize_target(self.inst, runs, self.settings)}
        if self.settings.keep_answers:
            entry["answers"] = {
                n: [
                    {
                        "item": o.item,
                        "variant": o.variant,
                        "order": o.order,
                        "status": o.status,
                        "text": o.text,
                        "probs": o.probs,
                        "lean": o.lean,
                    }
                    for o in r.observations
                ]
                for n, r in runs.items()
            }
        return CompassScored(
            CompassEntry.model_validate(entry),
            {n: item_values(self.inst, r.observations) for n, r in runs.items()},
            {n: {k: v for k, v in r.settings.items() if k != "seconds"} for n, r in runs.items()},
        )


def compass_task(
    inst: Instrument, settings: CompassSettings, scorer: OpenScorer | None = None
) -> Task[CompassScored, CompassResult]:
    """The compass on ``inst`` with ``settings`` (``scorer``: the open track's stance scorer, by default the
    offline one)."""
    s = settings
    if "open" in s.tracks and scorer is None:
        scorer = default_scorer()

    def summarize(scored: list[Scored[CompassScored]]) -> CompassResult:
        from politune.provenance import provenance

        comparisons = []
        ref = scored[0].entry
        for m in scored[1:]:
            for track in s.tracks:
                for axis in inst.axes:
                    c = compare_axis(
                        inst, ref.values[track], m.entry.values[track], axis, seed=s.seed, n_boot=s.n_boot
                    )
                    comparisons.append(
                        {"a": scored[0].target.name, "b": m.target.name, "track": track, "axis": axis, **c}
                    )
        track_settings = {n: ts for m in scored for n, ts in m.entry.track_settings.items()}
        return CompassResult.model_validate(
            {
                "kind": "compass",
                "instrument": inst.info(),
                "provenance": provenance(),
                "settings": {
                    **s.to_dict(),
                    "backend": scored[-1].backend,
                    "per_track": track_settings,
                    "scorer": getattr(scorer, "name", None) if "open" in s.tracks else None,
                    "scorer_validation": validated_accuracy(getattr(scorer, "name", ""))
                    if "open" in s.tracks
                    else None,
                    "scorer_precision": getattr(scorer, "precision", None) if "open" in s.tracks else None,
                },
                "models": [m.entry.entry for m in scored],
                "comparisons": comparisons,
            }
        )

    return Task(
        "compass", item_samples(inst), CompassTracks(inst, s, scorer), CompassScore(inst, s), summarize
    )


def measure_compass(
    targets: Sequence[Target],
    instrument: str | Path | Instrument = BUILTIN,
    scorer: OpenScorer | None = None,
    base_url: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    progress: Callable[[str], None] | None = None,
    **settings: Any,
) -> CompassResult:
    """Measure every target on the instrument; returns the typed compass.json.

    ``settings``: fields of :class:`CompassSettings` (``tracks``, ``seed``, ``items``, variants, orders,
    decoding, bootstrap size, ``keep_answers``); a bad one is a one-line error. ``base_url``: use an
    OpenAI-compatible server (the target's ``model`` is the served model name) instead of loading the model
    locally. ``progress(target name)`` is called as each target starts.
    """
    s = validate_config(CompassSettings, settings, "measure_compass settings")
    s.check()
    inst = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    if s.items:
        inst = inst.subset(s.items, seed=s.seed)
    if "open" in s.tracks and scorer is None:
        scorer = default_scorer()
    if not targets:
        raise PolituneError("measure_compass: no targets")
    task = compass_task(inst, s, scorer)
    return run_task(
        task,
        targets,
        base_url=base_url,
        device=device,
        dtype=dtype,
        batch_size=s.batch_size,
        on_target=progress,
    )


def save_compass(result: CompassResult, path: str | Path) -> Path:
    """Write compass.json atomically (a folder gets ``compass.json`` inside it)."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / "compass.json"
    return write_result(result, p)


def compass_evaluator(
    instrument: str | Path | Instrument = BUILTIN,
    tracks: Sequence[str] = ("logprob",),
    items: int = 16,
    seed: int = 0,
    system: str | None = None,
    scorer: OpenScorer | None = None,
) -> Callable[[CausalLM, Tokenizer], dict[str, float | None]]:
    """A quick compass for training trajectories: ``fn(model, tokenizer) -> {"economic": x, "social": y, ...}``.

    Uses a balanced subset of ``items`` items, the item text only, both option orders, no bootstrap. Keys:
    ``economic`` / ``social`` (the first track's scores), ``<track>.<axis>`` for every track, and
    ``content_sensitivity`` when the log-prob track runs. The model's train/eval mode is restored afterwards.
    """
    import torch

    s = CompassSettings(tracks=tuple(tracks), seed=seed, variants=("text",), items=items, n_boot=1)
    s.check()
    inst = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    inst = inst.subset(items, seed=seed) if items else inst
    if "open" in s.tracks and scorer is None:
        scorer = default_scorer()

    def evaluate(model: CausalLM, tokenizer: Tokenizer) -> dict[str, float | None]:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                runs = run_tracks(
                    LocalBackend(model, tokenizer, system=system, batch_size=s.batch_size), inst, s, scorer
                )
        finally:
            if was_training:
                model.train()
        out: dict[str, float | None] = {}
        for name, run in runs.items():
            vals = item_values(inst, run.observations)
            for a in inst.axes:
                out[f"{name}.{a}"] = score_axis(inst, vals, a, seed=seed, n_boot=1)["score"]
            if name == "logprob":
                out["content_sensitivity"] = content_sensitivity(run.observations)
        first = s.tracks[0]
        for a in inst.axes:
            out[a] = out[f"{first}.{a}"]
        return out

    return evaluate
