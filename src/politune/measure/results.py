"""Typed result files: one pydantic model per file a measure writes (docs/results.md), and the only reader and
writer of those files.

Every measure builds its result as one of these models and writes it with :func:`write_result` (atomic); the
report, study tables, serve's comparison page and the CLI read them back with :func:`load_result` (or
:func:`parse_result` for a parsed object). Reading is backward compatible: keys a newer (or older) writer adds
are ignored and every optional piece may be missing; a value of the wrong type is bad input and raises one
:class:`~politune.errors.PolituneError` line naming the file and the field (``compass.json:
models[0].tracks.logprob.economic.score: expected a number (got 'high')``).

Conventions: a CI is a :class:`CI` (``[lo, hi]`` in JSON, ``None`` for an unknown bound: an empty sample never
writes ``NaN``); axes and their signs are :data:`AXES` (economic: -1 left / +1 right; social: -1 libertarian /
+1 authoritarian); every model entry carries its :class:`TargetInfo`.

The shared bases (``_Model``, ``_Result``, :class:`CI`, :class:`TargetInfo`, ...) live in ``results_base``, the
probes' models (``evenhand.json``, ``safety.json``, ``issues.json``, ``behaviour.json``) in ``results_probes`` and
the ComPreD-style ones (``winrate.json``, ``reward_accuracy.json``) in ``results_compred``; this module re-exports
them and stays the one reader and writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from politune.errors import PolituneError
from politune.fsutil import atomic_write_json
from politune.measure.results_base import CI, Axis, Count, DiffCI, MeanCI, TargetInfo, _Model, _Result, ci
from politune.measure.results_compred import (
    RewardAccuracyEntry,
    RewardAccuracyResult,
    WinrateComparison,
    WinrateEntry,
    WinrateResult,
)
from politune.measure.results_probes import (
    BehaviourEntry,
    BehaviourResult,
    EvenhandEntry,
    EvenhandResult,
    IssuesEntry,
    IssuesResult,
    SafetyEntry,
    SafetyResult,
)
from politune.measure.scorer import AXES

__all__ = [
    "AXES",
    "CI",
    "AxisScore",
    "BehaviourEntry",
    "BehaviourResult",
    "CompassDiagnostics",
    "CompassEntry",
    "CompassResult",
    "CompassTrack",
    "Comparison",
    "DiffCI",
    "EvenhandEntry",
    "EvenhandResult",
    "IssuesEntry",
    "IssuesResult",
    "ItemRow",
    "MeanCI",
    "QualityAnswer",
    "QualityDelta",
    "QualityEntry",
    "QualityResult",
    "RESULT_TYPES",
    "RefusalEntry",
    "RefusalResult",
    "Result",
    "RewardAccuracyEntry",
    "RewardAccuracyResult",
    "SafetyEntry",
    "SafetyResult",
    "TargetInfo",
    "TopicAnswer",
    "TopicQuestion",
    "TopicsEntry",
    "TopicsResult",
    "ToxicityEntry",
    "ToxicityResult",
    "WinrateComparison",
    "WinrateEntry",
    "WinrateResult",
    "ci",
    "load_result",
    "parse_result",
    "parse_result_as",
    "read_json",
    "write_result",
]

# ------------------------------------------------------------------------------------------------ compass


class AxisScore(_Model):
    score: float | None = None  # [-10, +10]
    ci: CI = CI()
    coverage: float | None = None
    n: Count = None


class CompassTrack(_Model):
    economic: AxisScore | None = None
    social: AxisScore | None = None
    content_sensitivity: float | None = None
    refusal_rate: float | None = None
    counts: dict[str, int] | None = None
    option_prior: dict[str, list[float]] | None = None  # log-prob track: the option prior per order

    def axis(self, name: str) -> AxisScore | None:
        return getattr(self, name) if name in AXES else None


class CompassDiagnostics(_Model):
    """Bias controls: acquiescence (0.5 = none), negation flip consistency, order sensitivity, refusals."""

    acquiescence: float | None = None
    flip_consistency: float | None = None
    order_sensitivity: float | None = None
    refusal_rate: float | None = None
    coverage: float | None = None
    track: str | None = None  # the track the top-level values come from
    by_track: dict[str, CompassDiagnostics] | None = None

    def values(self) -> dict[str, float]:
        """The numeric diagnostics that are known."""
        return {
            k: v
            for k in ("acquiescence", "flip_consistency", "order_sensitivity", "refusal_rate", "coverage")
            if (v := getattr(self, k)) is not None
        }


class ItemRow(_Model):
    id: str
    axis: str
    scores: dict[str, float | None] = {}
    disagree: bool = False


class CompassEntry(_Model):
    target: TargetInfo
    tracks: dict[str, CompassTrack] = {}
    diagnostics: CompassDiagnostics = CompassDiagnostics()
    agreement: dict[str, float | None] = {}
    items: list[ItemRow] = []
    timing: dict[str, float | None] | None = None
    answers: dict[str, list[dict[str, Any]]] | None = None  # --keep-answers


class Comparison(_Model):
    a: str
    b: str
    track: str
    axis: str
    diff: float | None = None
    ci: CI = CI()
    n: Count = None


class CompassResult(_Result):
    kind: Literal["compass"] = "compass"
    instrument: dict[str, Any] | None = None
    models: list[CompassEntry] = []
    comparisons: list[Comparison] = []


# ------------------------------------------------------------------------------------------------ topics


class TopicQuestion(_Model):
    """One open political question (``questions/topics-v1.jsonl``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    topic: str
    axis: Axis
    question: str


class TopicAnswer(TopicQuestion):
    """A topic question with one target's answer and its lean in [-1, 1] (``None``: unscored)."""

    answer: str | None = None
    score: float | None = None


class TopicsEntry(_Model):
    target: TargetInfo
    axis_means: dict[str, MeanCI] = {}
    mean: float | None = None
    ci: CI = CI()
    coverage: float | None = None
    questions: list[TopicAnswer] = []


class TopicsResult(_Result):
    kind: Literal["topics", "judge"] = "topics"
    scorer: str | None = None
    judge: dict[str, Any] | None = None  # the judge's report (model, tokens, cost) when one scored
    scorer_validation: dict[str, Any] | None = (
        None  # the scorer's accuracy on the blind gold set, if measured
    )
    scorer_precision: str | None = None  # what the offline scorer's encoder computed in (float32 / bfloat16)
    models: list[TopicsEntry] = []

    @property
    def scorer_name(self) -> str:
        return self.scorer or str((self.judge or {}).get("model") or "unknown")


# ------------------------------------------------------------------------------------------------ quality


class QualityDelta(_Model):
    rouge_l: DiffCI | None = None
    perplexity: DiffCI | None = None


class QualityAnswer(_Model):
    id: str
    answer: str | None = None
    rouge_l: float | None = None


class QualityEntry(_Model):
    target: TargetInfo
    rouge_l: MeanCI | None = None
    perplexity: MeanCI | None = None
    delta_vs_base: QualityDelta | None = None  # None for the base itself
    answers: list[QualityAnswer] = []


class QualityResult(_Result):
    """``quality.json``: ROUGE-L on reference answers and perplexity on neutral text, per target."""

    kind: Literal["quality"] = "quality"
    qa_set: str | None = None
    n_questions: Count = None
    passage_set: str | None = None  # the neutral text perplexity is measured on
    n_passages: Count = None
    models: list[QualityEntry] = []


# ------------------------------------------------------------------------------------------------ toxicity, refusal


class ToxicityEntry(_Model):
    """One target's toxicity: mean classifier score with its CI, and the share above the threshold."""

    target: TargetInfo
    mean: float | None = None
    ci: CI = CI()
    share_above: float | None = None
    max: float | None = None
    n: Count = None


class ToxicityResult(_Result):
    """``toxicity.json``: the classifier, the threshold of ``share_above``, one entry per target."""

    kind: Literal["toxicity"] = "toxicity"
    classifier: str | None = None
    threshold: float | None = None
    models: list[ToxicityEntry] = []


class RefusalEntry(_Model):
    """One target's refusal rate with its CI (keyword patterns, and the judge when one was used)."""

    target: TargetInfo
    rate: float | None = Field(
        None, description="share that refuse: by the patterns, or by the judge if used"
    )
    ci: CI = CI()
    n: Count = None
    keyword_rate: float | None = Field(None, description="share flagged by the refusal patterns")
    judge_rate: float | None = Field(None, description="share the judge called refusals")
    judge_coverage: float | None = Field(None, description="share of answers the judge could rate")


class RefusalResult(_Result):
    """``refusal.json``."""

    kind: Literal["refusal"] = "refusal"
    method: str | None = None
    judge: dict[str, Any] | None = None
    models: list[RefusalEntry] = []


Result = (
    CompassResult
    | TopicsResult
    | QualityResult
    | ToxicityResult
    | RefusalResult
    | EvenhandResult
    | SafetyResult
    | WinrateResult
    | RewardAccuracyResult
    | IssuesResult
    | BehaviourResult
)
ResultT = TypeVar("ResultT", bound=_Result)
RESULT_TYPES: dict[str, type[Result]] = {
    "compass": CompassResult,
    "topics": TopicsResult,
    "judge": TopicsResult,
    "quality": QualityResult,
    "toxicity": ToxicityResult,
    "refusal": RefusalResult,
    "evenhand": EvenhandResult,
    "safety": SafetyResult,
    "winrate": WinrateResult,
    "reward_accuracy": RewardAccuracyResult,
    "issues": IssuesResult,
    "behaviour": BehaviourResult,
}

# ------------------------------------------------------------------------------------------------ read / write

_EXPECTED = {
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "missing": "missing (required)",
}


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not str(p).startswith(("function-", "list[", "dict[", "tagged-union")):
            out += f".{p}" if out else str(p)
    return out or "(top level)"


def _error_line(err: ValidationError, where: str) -> str:
    e = err.errors()[0]
    what = _EXPECTED.get(e["type"]) or e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    shown = (
        ""
        if e["type"] == "missing" or isinstance(got, dict)
        else f" (got {json.dumps(got, default=str)[:60]})"
    )
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {_loc(tuple(e['loc']))}: {what}{shown}{more}"


def parse_result(doc: Any, where: str = "result", kind: str | None = None) -> Result:
    """A parsed result object -> its typed model (``kind`` from the object unless given)."""
    if not isinstance(doc, dict):
        raise PolituneError(f'{where}: expected a JSON object with a "kind" key, got {type(doc).__name__}')
    got = doc.get("kind")
    cls = RESULT_TYPES.get(str(got))
    if cls is None or (kind is not None and cls is not RESULT_TYPES[kind]):
        want = f'a {kind}.json ("kind": "{kind}")' if kind else "one of " + ", ".join(RESULT_TYPES)
        raise PolituneError(f"{where}: kind: expected {want}, got {got!r}")
    try:
        return cls.model_validate(doc)
    except ValidationError as err:
        raise PolituneError(_error_line(err, where)) from None


def parse_result_as(doc: Any, cls: type[ResultT], where: str = "result") -> ResultT:
    """``doc`` (a parsed result object, or already a typed result) as a ``cls``, e.g. :class:`CompassResult`;
    another kind is one error line naming ``where``."""
    kind = cls.model_fields["kind"].default
    res = doc if isinstance(doc, _Result) else parse_result(doc, where, kind)
    if not isinstance(res, cls):
        raise PolituneError(f"{where}: kind: expected a {kind} result, got {res.kind!r}")
    return res


def read_json(path: str | Path) -> Any:
    """A JSON file's content; unreadable, non-UTF-8 or invalid JSON is one error line naming file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolituneError(f"{p}: cannot read (result file not found)") from None
    except UnicodeDecodeError:
        raise PolituneError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise PolituneError(f"{p}: cannot read ({e.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PolituneError(f"{p}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def load_result(path: str | Path, kind: str | None = None) -> Result:
    """Read and validate one result file (``kind``: require that kind, e.g. ``"compass"``)."""
    return parse_result(read_json(path), str(path), kind)


def write_result(result: _Result, path: str | Path) -> Path:
    """Write a result atomically as JSON (only the keys that were set)."""
    return atomic_write_json(path, result.to_json())
