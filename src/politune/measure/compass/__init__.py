"""The compass: where a model sits on the economic (left <-> right) and social (libertarian <-> authoritarian)
axes, measured three ways (log-prob, choice, open), with bias controls, diagnostics and bootstrap CIs.

Public API::

    inst = load_instrument("builtin")                  # or a YAML path (docs/instruments.md)
    result = measure_compass(build_targets("smollm2-135m"), tracks=("logprob", "choice"))  # a CompassResult
    task = compass_task(inst, CompassSettings(tracks=("logprob",)))  # the same as a Task for run_tasks
    save_compass(result, "runs/compass/compass.json")  # atomic
    evaluate = compass_evaluator(items=16)             # fn(model, tokenizer) -> {"economic": x, "social": y}

See docs/compass.md.
"""

from politune.measure.compass.backends import (
    HTTPBackend,
    LocalBackend,
    score_options_cached,
    score_options_independent,
)
from politune.measure.compass.instrument import (
    Instrument,
    Item,
    Option,
    check_instrument,
    load_instrument,
    parse_instrument,
)
from politune.measure.compass.prompts import Templates, parse_choice
from politune.measure.compass.run import (
    TRACKS,
    CompassOptions,
    CompassSettings,
    compass_evaluator,
    compass_task,
    measure_compass,
    save_compass,
)
from politune.measure.compass.scoring import Observation, score_answer_sheet, score_observations

__all__ = ["TRACKS", "CompassOptions", "CompassSettings", "HTTPBackend", "Instrument", "Item", "LocalBackend",
           "Observation", "Option", "Templates", "check_instrument", "compass_evaluator", "compass_task", "load_instrument", "measure_compass",
           "parse_choice", "parse_instrument", "save_compass", "score_answer_sheet", "score_observations",
           "score_options_cached", "score_options_independent"]
