"""The compass: where a model sits on the economic (left <-> right) and social (libertarian <-> authoritarian)
axes, measured three ways (log-prob, choice, open), with bias controls, diagnostics and bootstrap CIs.

Public API::

    inst = load_instrument("builtin")                  # or a YAML path (docs/instruments.md)
    result = measure_compass(build_targets("smollm2-135m"), tracks=("logprob", "choice"))  # a CompassResult
    task = compass_task(inst, CompassSettings(tracks=("logprob",)))  # the same as a Task for run_tasks
    save_compass(result, "runs/compass/compass.json")  # atomic
    evaluate = compass_evaluator(items=16)             # fn(model, tokenizer) -> {"economic": x, "social": y}

Internals (tracks, backends, prompt templates, scoring of observations) live in their modules; see
docs/compass.md.
"""

from politune.measure.compass.instrument import Instrument, check_instrument, load_instrument
from politune.measure.compass.run import (
    TRACKS,
    CompassOptions,
    CompassSettings,
    compass_evaluator,
    compass_task,
    measure_compass,
    save_compass,
)
from politune.measure.compass.scoring import score_answer_sheet

__all__ = [
    "TRACKS",
    "CompassOptions",
    "CompassSettings",
    "Instrument",
    "check_instrument",
    "compass_evaluator",
    "compass_task",
    "load_instrument",
    "measure_compass",
    "save_compass",
    "score_answer_sheet",
]
