"""``measure_compass``: targets x tracks -> the compass.json content (docs/results.md); and the fast evaluator the
tuner calls every N steps.

Read top to bottom: load the instrument, then for each target (base model loaded once, adapters swapped by
``iter_loaded``) run each requested track, score each axis with a cluster-bootstrap CI, add the diagnostics and
the agreement between tracks; finally compare every target with the first one (usually ``base``) per track
and axis, with a paired CI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from politune.errors import PolituneError
from politune.fsutil import atomic_write_json
from politune.measure.compass.backends import HTTPBackend, LocalBackend
from politune.measure.compass.diagnostics import agreement, content_sensitivity, track_diagnostics
from politune.measure.compass.instrument import BUILTIN, Instrument, load_instrument
from politune.measure.compass.prompts import Templates
from politune.measure.compass.scoring import N_BOOT, compare_axis, item_values, score_axis
from politune.measure.compass.tracks import DEFAULT_VARIANTS, TrackRun, run_choice, run_logprob, run_open
from politune.measure.targets import Target

log = logging.getLogger("politune")

TRACKS = ("logprob", "choice", "open")


@dataclass
class CompassSettings:
    """Everything that decides a compass result (recorded in ``settings``). Defaults are the documented ones."""

    tracks: tuple[str, ...] = ("logprob", "choice", "open")
    seed: int = 0
    variants: tuple[str, ...] = DEFAULT_VARIANTS  # closed-form tracks: text, paraphrases, negation
    open_variants: tuple[str, ...] = ("text",)  # open track: free answers are costly; the item text only
    orders: tuple[str, ...] = ("forward", "reversed")
    calibrate: bool = True  # log-prob: divide out the content-free option prior
    choice_max_new_tokens: int = 12
    open_max_new_tokens: int = 80
    temperature: float = 0.0  # choice/open decoding; > 0 samples ``samples`` answers per prompt
    samples: int = 1
    batch_size: int = 16
    n_boot: int = N_BOOT
    items: int | None = None  # use a balanced subset of this many items (None: all)
    templates: Templates = field(default_factory=Templates)

    def check(self) -> None:
        bad = [t for t in self.tracks if t not in TRACKS]
        if bad or not self.tracks:
            raise PolituneError(f"--tracks: unknown track(s) {bad}; expected a comma list of {', '.join(TRACKS)}")
        for v in (*self.variants, *self.open_variants):
            if v not in DEFAULT_VARIANTS:
                raise PolituneError(f"variant {v!r}: expected one of {', '.join(DEFAULT_VARIANTS)}")
        for o in self.orders:
            if o not in ("forward", "reversed"):
                raise PolituneError(f"order {o!r}: expected forward and/or reversed")
        if self.samples < 1 or self.batch_size < 1:
            raise PolituneError("samples and batch_size must be >= 1")

    def to_dict(self) -> dict:
        return {"tracks": list(self.tracks), "seed": self.seed, "variants": list(self.variants),
                "open_variants": list(self.open_variants), "orders": list(self.orders),
                "calibrate": self.calibrate, "items": self.items, "n_boot": self.n_boot,
                "decoding": {"choice_max_new_tokens": self.choice_max_new_tokens,
                             "open_max_new_tokens": self.open_max_new_tokens, "temperature": self.temperature,
                             "samples": self.samples, "greedy": self.temperature == 0},
                "templates": self.templates.to_dict()}


def default_scorer():
    """The offline MiniLM stance scorer when it is importable (it is part of politune), else a clear error."""
    try:
        from politune.measure.stance import OfflineStanceScorer
    except ImportError as e:
        raise PolituneError(f"the open track needs a stance scorer and the offline scorer is unavailable ({e}); "
                            "pass scorer=... or drop 'open' from --tracks") from None
    return OfflineStanceScorer()


def run_tracks(backend, inst: Instrument, s: CompassSettings, scorer=None) -> dict[str, TrackRun]:
    runs: dict[str, TrackRun] = {}
    for name in s.tracks:
        t0 = time.perf_counter()
        if name == "logprob":
            runs[name] = run_logprob(backend, inst, s.templates, s.variants, s.orders, s.calibrate)
        elif name == "choice":
            runs[name] = run_choice(backend, inst, s.templates, s.variants, s.orders, s.choice_max_new_tokens,
                                    s.temperature, s.samples, s.seed)
        else:
            runs[name] = run_open(backend, inst, s.templates, scorer, s.open_variants, s.open_max_new_tokens,
                                  s.temperature, s.samples, s.seed)
        runs[name].settings["seconds"] = round(time.perf_counter() - t0, 2)  # reported apart from results
        log.info("%s track: %d prompts in %.1fs", name, len(runs[name].observations), time.perf_counter() - t0)
    return runs


def summarize_target(inst: Instrument, runs: dict[str, TrackRun], s: CompassSettings) -> dict:
    """One ``models[]`` entry (without ``target``) from the runs of one target."""
    tracks, diags = {}, {}
    for name, run in runs.items():
        vals = item_values(inst, run.observations)
        d = track_diagnostics(inst, run.observations)
        entry = {a: score_axis(inst, vals, a, seed=s.seed, n_boot=s.n_boot) for a in inst.axes}
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
    return {"tracks": tracks, "diagnostics": diagnostics, "agreement": rates, "items": items,
            "timing": {n: r.settings.get("seconds") for n, r in runs.items()}}


def measure_compass(targets: Sequence[Target], instrument: str | Path | Instrument = BUILTIN,
                    tracks: Sequence[str] = ("logprob", "choice", "open"), scorer=None, seed: int = 0,
                    settings: CompassSettings | None = None, base_url: str | None = None, device: str = "auto",
                    dtype: str = "auto", progress: Callable[[str], None] | None = None,
                    keep_answers: bool = False, **overrides) -> dict:
    """Measure every target on the instrument with the requested tracks; returns compass.json's content.

    ``settings`` (or keyword ``overrides`` of :class:`CompassSettings` fields) fix variants, orders, decoding
    and bootstrap size. ``base_url``: use an OpenAI-compatible server (the target's ``model`` is the served
    model name) instead of loading the model locally. ``keep_answers``: also store every generated answer.
    """
    from politune.measure.targets import iter_loaded
    from politune.provenance import provenance

    s = settings or CompassSettings()
    for k, v in {"tracks": tuple(tracks), "seed": seed, **overrides}.items():
        if not hasattr(s, k):
            raise PolituneError(f"measure_compass: unknown setting {k!r}")
        setattr(s, k, tuple(v) if isinstance(v, list) else v)
    s.check()
    inst = instrument if isinstance(instrument, Instrument) else load_instrument(instrument)
    if s.items:
        inst = inst.subset(s.items, seed=s.seed)
    if "open" in s.tracks and scorer is None:
        scorer = default_scorer()
    if not targets:
        raise PolituneError("measure_compass: no targets")

    models = []
    backend_info = None
    track_settings: dict = {}

    def one(target: Target, backend) -> None:
        nonlocal backend_info
        if progress:
            progress(target.name)
        runs = run_tracks(backend, inst, s, scorer)
        entry = {"target": target.to_dict(), **summarize_target(inst, runs, s)}
        if keep_answers:
            entry["answers"] = {n: [{"item": o.item, "variant": o.variant, "order": o.order, "status": o.status,
                                     "text": o.text, "probs": o.probs, "lean": o.lean} for o in r.observations]
                                for n, r in runs.items()}
        entry["_values"] = {n: item_values(inst, r.observations) for n, r in runs.items()}
        backend_info = backend.describe()
        for n, r in runs.items():
            track_settings[n] = {k: v for k, v in r.settings.items() if k != "seconds"}
        models.append(entry)

    if base_url:
        for t in targets:
            if t.adapter:
                raise PolituneError(f"target {t.name}: adapters cannot be attached over HTTP; serve the adapter "
                                    "and pass its served name as the model")
            one(t, HTTPBackend(base_url, t.model, system=t.system))
    else:
        for t, model, tok in iter_loaded(targets, device=device, dtype=dtype):
            one(t, LocalBackend(model, tok, system=t.system, batch_size=s.batch_size))

    comparisons = []
    ref = models[0]
    for m in models[1:]:
        for track in s.tracks:
            for axis in inst.axes:
                c = compare_axis(inst, ref["_values"][track], m["_values"][track], axis, seed=s.seed,
                                 n_boot=s.n_boot)
                comparisons.append({"a": ref["target"]["name"], "b": m["target"]["name"], "track": track,
                                    "axis": axis, **c})
    for m in models:
        m.pop("_values")
    return {"kind": "compass", "instrument": inst.info(), "provenance": provenance(),
            "settings": {**s.to_dict(), "backend": backend_info, "per_track": track_settings,
                         "scorer": getattr(scorer, "name", None) if "open" in s.tracks else None},
            "models": models, "comparisons": comparisons}


def save_compass(result: dict, path: str | Path) -> Path:
    """Write compass.json atomically (a folder gets ``compass.json`` inside it)."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / "compass.json"
    return atomic_write_json(p, result)


def compass_evaluator(instrument: str | Path | Instrument = BUILTIN, tracks: Sequence[str] = ("logprob",),
                      items: int = 16, seed: int = 0, system: str | None = None, scorer=None
                      ) -> Callable[..., dict]:
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

    def evaluate(model, tokenizer) -> dict:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                runs = run_tracks(LocalBackend(model, tokenizer, system=system, batch_size=s.batch_size),
                                  inst, s, scorer)
        finally:
            if was_training:
                model.train()
        out: dict = {}
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
