"""measure pillar: what a model (base, adapter or persona) says about politics, and what tuning did to it.

Public API::

    targets = build_targets("smollm2-135m", adapters=["left=runs/left/adapter"])
    results = measure_effects(targets, ("topics", "quality"), out_dir="runs/effects")  # typed results
    result = load_result("runs/effects/topics.json")      # the one reader of result files

    # a new measure is a Task (dataset + solver + scorer + summarize), run by run_tasks (docs/contributing.md)
    results = run_tasks([my_task], targets)

The compass has its own sub-package, :mod:`politune.measure.compass`. Stance scorers implement
:class:`StanceScorer`; :class:`Judge` is the LLM judge over any OpenAI-compatible server. See docs/architecture.md.
"""

from politune.measure.effects import MEASURES, EffectsOptions, EffectsSettings, effects_tasks, measure_effects
from politune.measure.judge import Judge, parse_judge_spec
from politune.measure.results import CI, load_result, parse_result, write_result
from politune.measure.scorer import AXES, StanceScorer
from politune.measure.stats import bootstrap_ci
from politune.measure.targets import Target, build_targets
from politune.measure.task import Sample, Scored, Task, run_task, run_tasks

__all__ = [
    "AXES",
    "CI",
    "MEASURES",
    "EffectsOptions",
    "EffectsSettings",
    "Judge",
    "Sample",
    "Scored",
    "StanceScorer",
    "Target",
    "Task",
    "bootstrap_ci",
    "build_targets",
    "effects_tasks",
    "load_result",
    "measure_effects",
    "parse_judge_spec",
    "parse_result",
    "run_task",
    "run_tasks",
    "write_result",
]
