"""How good is a judge? Any stance scorer or LLM judge, scored against the blind gold set.

The gold set (``measure/gold/gold-v1.jsonl``, protocol in docs/gold.md) holds free-text answers of real
models, each rated blind by independent raters on both axes from -2 to +2; the gold value of an item on an
axis is the raters' mean. For one scorer and one axis we report, each with a 95% bootstrap CI over items:

- ``sign_accuracy``: over the items whose gold mean is at least ``MIN_GOLD`` away from 0 (the raters found a
  lean), the share where the scorer's lean has the same sign. A scorer that says 0 or cannot score (``None``)
  is counted wrong: abstaining is not agreeing.
- ``spearman``: Spearman's rho between the scorer's lean and the gold mean over all items it scored (off-axis
  and neutral items included, so a scorer that invents a lean for neutral text loses here).
- ``bias`` per source model: the mean of ``lean - gold / 2`` (both on [-1, 1]) over that source's items: a
  scorer that reads one model's style as a stance shows it here.
- ``style_gap``: sign accuracy on answers of adapters tuned on the built-in data minus on all other
  answers; a scorer that detects the built-in answers' style rather than what a text argues shows a gap.

``validate_scorer`` returns a :class:`JudgeValidation`; ``politune measure validate-judge`` prints it and
writes it as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from politune.errors import PolituneError
from politune.fsutil import parse_jsonl_objects
from politune.measure.results import CompassResult, TopicsResult
from politune.measure.scorer import AXES, AgreementScorer, StanceScorer
from politune.measure.stats import bootstrap_ci, bootstrap_groups

MIN_GOLD = 0.5  # |gold mean| at or above this counts as "rated non-zero" (half a point on the -2..+2 scale)
TUNED_SOURCES = ("left", "right")  # sources that are adapters tuned on the built-in data (style-gap check)
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class GoldItem:
    """One rated answer: what the raters saw (``prompt``, ``text``) and what they said (``ratings``)."""

    id: str
    split: str  # "dev" (free to look at and tune on) or "test" (report only)
    source: str  # which model wrote it: base, left, right, persona-left, ...
    kind: str  # compass, topic or request
    prompt: str
    text: str
    ratings: dict[str, tuple[int, ...]]  # axis -> one rating per rater, each in -2..+2

    def gold(self, axis: str) -> float:
        """The raters' mean on ``axis``, in [-2, 2]."""
        return float(np.mean(self.ratings[axis]))


def builtin_gold_path() -> Path:
    return Path(str(resources.files("politune.measure") / "gold" / "gold-v1.jsonl"))


def load_gold(path: str | Path | None = None, split: str | None = None) -> list[GoldItem]:
    """Read a gold file (default: the shipped one), optionally one split; every row is checked."""
    p = Path(path) if path is not None else builtin_gold_path()
    if not p.is_file():
        raise PolituneError(f"{p}: gold file not found")
    if split is not None and split not in SPLITS:
        raise PolituneError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    items = []
    for n, d in parse_jsonl_objects(p.read_text(encoding="utf-8"), str(p)):
        for key in ("id", "split", "source", "prompt", "text"):
            if not isinstance(d.get(key), str):
                raise PolituneError(f"{p}:{n}: {key}: expected a string")
        if d["split"] not in SPLITS:
            raise PolituneError(f"{p}:{n}: split: expected one of {', '.join(SPLITS)}, got {d['split']!r}")
        ratings = d.get("ratings")
        if not isinstance(ratings, dict) or set(ratings) != set(AXES):
            raise PolituneError(f"{p}:{n}: ratings: expected an object with keys {', '.join(AXES)}")
        for axis, rs in ratings.items():
            if not isinstance(rs, list) or not rs or not all(isinstance(r, int) and -2 <= r <= 2 for r in rs):
                raise PolituneError(
                    f"{p}:{n}: ratings.{axis}: expected a non-empty list of integers in -2..2"
                )
        if split is None or d["split"] == split:
            items.append(
                GoldItem(
                    d["id"],
                    d["split"],
                    d["source"],
                    str(d.get("kind", "")),
                    d["prompt"],
                    d["text"],
                    {a: tuple(ratings[a]) for a in AXES},
                )
            )
    if not items:
        raise PolituneError(f"{p}: no gold items" + (f" in split {split!r}" if split else ""))
    return items


# ------------------------------------------------------------------------------------------ statistics
@dataclass
class Estimate:
    value: float
    ci: tuple[float, float]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": _r(self.value), "ci": [_r(self.ci[0]), _r(self.ci[1])], "n": self.n}


def _r(x: float) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def _mean_est(x: np.ndarray, n_boot: int, seed: int) -> Estimate:
    return Estimate(
        float(x.mean()) if x.size else float("nan"),
        bootstrap_ci(x.tolist(), n_boot=n_boot, seed=seed),
        int(x.size),
    )


def _spearman_est(p: np.ndarray, g: np.ndarray, n_boot: int, seed: int) -> Estimate:
    """Spearman's rho with a bootstrap CI over (lean, gold) pairs resampled together."""
    pairs = list(np.stack([p, g], axis=1))
    ci = bootstrap_groups(pairs, lambda gs: _spearman(*np.stack(gs).T), n_boot=n_boot, seed=seed)
    return Estimate(_spearman(p, g), ci, int(p.size))


@dataclass
class AxisValidation:
    sign_accuracy: Estimate
    spearman: Estimate
    coverage: float  # share of items the scorer gave a lean to (not None)
    bias: dict[str, Estimate]  # source -> mean(lean - gold/2)
    sign_accuracy_by_source: dict[str, Estimate]
    style_gap: Estimate  # sign accuracy on tuned-adapter answers minus on all others

    def to_dict(self) -> dict[str, Any]:
        return {
            "sign_accuracy": self.sign_accuracy.to_dict(),
            "spearman": self.spearman.to_dict(),
            "coverage": _r(self.coverage),
            "style_gap": self.style_gap.to_dict(),
            "bias": {k: v.to_dict() for k, v in self.bias.items()},
            "sign_accuracy_by_source": {k: v.to_dict() for k, v in self.sign_accuracy_by_source.items()},
        }


@dataclass
class JudgeValidation:
    judge: str
    gold: str
    split: str | None
    n_items: int
    axes: dict[str, AxisValidation] = field(default_factory=dict)
    precision: str | None = None  # what an offline scorer's encoder computed in (None: an LLM judge)
    items: str = "all"  # which gold answers: "all", or "compass" (an agreement reader: the keyed ones)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "judge-validation",
            "judge": self.judge,
            "gold": self.gold,
            "split": self.split,
            "n_items": self.n_items,
            "min_gold": MIN_GOLD,
            "precision": self.precision,
            "items": self.items,
            "axes": {a: v.to_dict() for a, v in self.axes.items()},
        }


def validate_axis(
    items: Sequence[GoldItem], leans: Sequence[float | None], axis: str, n_boot: int = 1000, seed: int = 0
) -> AxisValidation:
    """The statistics of one axis from the scorer's ``leans`` (one per item, ``None`` = not scored)."""
    gold = np.array([it.gold(axis) for it in items])
    pred = np.array([np.nan if v is None else float(v) for v in leans])
    rated = np.abs(gold) >= MIN_GOLD
    hit = (np.sign(np.nan_to_num(pred)) == np.sign(gold)).astype(float)
    scored = ~np.isnan(pred)
    acc = _mean_est(hit[rated], n_boot, seed)
    rho = _spearman_est(pred[scored], gold[scored], n_boot, seed)
    sources = sorted({it.source for it in items})
    src = np.array([it.source for it in items])
    bias = {s: _mean_est((pred - gold / 2)[scored & (src == s)], n_boot, seed) for s in sources}
    by_src = {s: _mean_est(hit[rated & (src == s)], n_boot, seed) for s in sources}
    tuned = np.isin(src, TUNED_SOURCES)
    a, b = hit[rated & tuned], hit[rated & ~tuned]
    if a.size and b.size:
        rng = np.random.default_rng(seed)
        diffs = [
            a[rng.integers(0, a.size, a.size)].mean() - b[rng.integers(0, b.size, b.size)].mean()
            for _ in range(n_boot)
        ]
        gap = Estimate(
            float(a.mean() - b.mean()),
            (float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))),
            int(a.size + b.size),
        )
    else:
        gap = Estimate(float("nan"), (float("nan"), float("nan")), int(a.size + b.size))
    return AxisValidation(acc, rho, float(scored.mean()) if scored.size else float("nan"), bias, by_src, gap)


def validate_scorer(
    scorer: StanceScorer | AgreementScorer,
    items: Sequence[GoldItem],
    gold_name: str = "gold-v1",
    split: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> JudgeValidation:
    """Score the gold items with ``scorer`` and compare with the raters. A stance scorer reads every item on
    both axes; an agreement reader reads the items that ask a proposition of the built-in instrument (kind
    ``compass``), each answer's lean = the proposition's key x the read agreement, on the proposition's axis."""
    precision = getattr(scorer, "precision", None)
    if not isinstance(scorer, AgreementScorer):
        out = JudgeValidation(scorer.name, gold_name, split, len(items), precision=precision)
        texts, prompts = [it.text for it in items], [it.prompt for it in items]
        for axis in AXES:
            out.axes[axis] = validate_axis(items, scorer.lean(texts, axis, prompts), axis, n_boot, seed)
        return out
    from politune.measure.compass.instrument import load_instrument

    by_text = {it.text.strip(): it for it in load_instrument("builtin").items}
    asked = [(g, by_text.get(g.prompt.split("\n\n")[0].strip())) for g in items if g.kind == "compass"]
    keyed = [(g, it) for g, it in asked if it is not None]
    out = JudgeValidation(scorer.name, gold_name, split, len(keyed), precision=precision, items="compass")
    agree = scorer.agreement([g.text for g, _ in keyed], [g.prompt for g, _ in keyed])
    leans = [None if a is None else it.lean_of(a) for (_, it), a in zip(keyed, agree, strict=True)]
    for axis in AXES:
        on = [n for n, (_, it) in enumerate(keyed) if it.axis == axis]
        out.axes[axis] = validate_axis([keyed[n][0] for n in on], [leans[n] for n in on], axis, n_boot, seed)
    return out


# ---------------------------------------------------------------------------------- validated accuracy
def validation_path(scorer_name: str) -> Path:
    return Path(str(resources.files("politune.measure") / "gold" / f"validation-{scorer_name}.json"))


def validated_accuracy(scorer_name: str) -> dict[str, Any] | None:
    """What ``politune measure validate-judge`` measured for this scorer on the gold set's test half
    (written by ``politune measure validate-judge --out``, see docs/gold.md): per axis, sign accuracy and Spearman rho with CIs.
    ``None`` for a scorer that was never validated (an LLM judge: run validate-judge on it)."""
    path = validation_path(scorer_name)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        "judge": doc["judge"],
        "gold": doc["gold"],
        "split": doc["split"],
        "items": doc.get("items", "all"),
        "axes": {
            a: {"sign_accuracy": v["sign_accuracy"], "spearman": v["spearman"]}
            for a, v in doc["axes"].items()
        },
    }


def stance_judge(result: CompassResult | TopicsResult) -> tuple[str | None, dict[str, Any] | None]:
    """The scorer that read a result's open answers and its gold-set validation (``None`` if never validated;
    name ``None`` for a compass run without the open track)."""
    if isinstance(result, CompassResult):
        return result.settings.get("scorer"), result.settings.get("scorer_validation")
    return result.scorer_name, result.scorer_validation


def validation_note(scorer_name: str, validation: dict[str, Any] | None) -> str:
    """One line to print next to the positions a scorer produced: its validated accuracy, or a warning."""
    axes = (validation or {}).get("axes", {})
    shown = ", ".join(
        f"{a} {v['sign_accuracy']['value']:.2f}"
        for a, v in axes.items()
        if v["sign_accuracy"].get("value") is not None
    )
    if not shown:
        return (
            f"leans read by {scorer_name}, NOT validated on the blind gold set: run `politune measure "
            "validate-judge` on it (docs/gold.md)"
        )
    compass = (validation or {}).get("items") == "compass"
    where = "the blind gold set's compass answers" if compass else "the blind gold set"
    return (
        f"leans read by {scorer_name}: sign accuracy on {where} (test half) {shown} "
        "(`politune measure validate-judge`, docs/gold.md)"
    )
