"""The three ways to elicit a position. Each returns one :class:`Observation` per (item, variant, order[, sample]).

- :func:`run_logprob`: the model's distribution over the answer options (no generation). Options are listed in
  forward and reversed order; the option prior is estimated from content-free statements (``N/A``, ...) in the
  same template and order, and divided out (contextual calibration); what is scored is the corrected
  distribution's expected value.
- :func:`run_choice`: a short generated answer parsed onto the scale; unparseable answers and refusals are
  counted, never guessed.
- :func:`run_open`: a free answer read by an :class:`~politune.measure.scorer.AgreementScorer` (lean = the item's key
  x the answer's agreement with the statement; the default) or a :class:`~politune.measure.scorer.StanceScorer`.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from politune.measure.compass.instrument import Instrument, Item
from politune.measure.compass.prompts import CONTENT_FREE, Templates, closed_prompt, open_prompt, parse_choice
from politune.measure.compass.scoring import Observation
from politune.measure.refusal import is_refusal
from politune.measure.scorer import AgreementScorer

if TYPE_CHECKING:
    from politune.measure.compass.backends import Backend
    from politune.measure.scorer import OpenScorer

T = TypeVar("T")

DEFAULT_VARIANTS = ("text", "paraphrases", "negation")


@dataclass
class TrackRun:
    name: str
    observations: list[Observation]
    settings: dict[str, Any]  # decoding parameters, templates, variants, orders
    prior: dict[str, list[float]] | None = None  # log-prob track: option prior per order


Plan = list[tuple[Item, str, str, int, str]]  # (item, variant id, statement, polarity, order) per prompt


@dataclass(frozen=True)
class ClosedForm:
    """How the closed-form tracks (log-prob, choice) ask: the prompt templates, the statement variants and the
    option orders. Every item is asked once per (variant, order)."""

    templates: Templates = field(default_factory=Templates)
    variants: Sequence[str] = DEFAULT_VARIANTS
    orders: Sequence[str] = ("forward", "reversed")

    def template(self, letters: bool) -> Templates:
        """The templates with options listed as ``A.``, ``B.``, ... (``letters``) or as their text."""
        return self.templates.with_letters(letters)

    def ask(self, inst: Instrument, letters: bool) -> tuple[Plan, list[str]]:
        """Every prompt's plan entry and text."""
        t = self.template(letters)
        plan = [
            (it, vid, stmt, pol, o)
            for it in inst.items
            for vid, stmt, pol in it.variants(tuple(self.variants))
            for o in self.orders
        ]
        return plan, [closed_prompt(t, stmt, inst.labels, o) for _, _, stmt, _, o in plan]

    def settings(self, letters: bool) -> dict[str, Any]:
        """As a track records them."""
        template = self.template(letters).to_dict()
        return {"variants": list(self.variants), "orders": list(self.orders), "template": template}


def _per_order(call: Callable[[list[int]], Sequence[T]], orders: Sequence[str]) -> list[T]:
    """Run ``call(indices)`` once per option order and put the results back in input order: within one order
    every prompt shares the instructions *and* the option list, so the shared KV-cache prefix is longest."""
    out: dict[int, T] = {}
    for o in dict.fromkeys(orders):
        idx = [i for i, oo in enumerate(orders) if oo == o]
        for i, r in zip(idx, call(idx), strict=True):
            out[i] = r
    return [out[i] for i in range(len(orders))]


def _softmax(lps: Sequence[float]) -> list[float]:
    m = max(lps)
    e = [math.exp(x - m) for x in lps]
    s = sum(e)
    return [x / s for x in e]


def _continuations(labels: list[str], order: str, letters: bool) -> list[str]:
    """What the model would say for each option, in *scale* order (most-disagree first)."""
    if not letters:
        return list(labels)
    n = len(labels)
    pos = list(range(n)) if order == "forward" else list(reversed(range(n)))  # option k is listed at pos[k]
    return [string.ascii_uppercase[pos[k]] for k in range(n)]


def run_logprob(backend: Backend, inst: Instrument, form: ClosedForm, calibrate: bool = True) -> TrackRun:
    letters = form.templates.letters or getattr(backend, "single_token_options", False)
    labels = inst.labels
    plan, prompts = form.ask(inst, letters)
    conts = [_continuations(labels, o, letters) for *_, o in plan]
    cf_plan = [(o, s) for o in form.orders for s in CONTENT_FREE] if calibrate else []
    cf_prompts = [closed_prompt(form.template(letters), s, labels, o) for o, s in cf_plan]
    cf_conts = [_continuations(labels, o, letters) for o, _ in cf_plan]
    lps = _per_order(
        lambda idx: backend.option_logprobs(
            [(prompts + cf_prompts)[i] for i in idx], [(conts + cf_conts)[i] for i in idx]
        ),
        [o for *_, o in plan] + [o for o, _ in cf_plan],
    )
    probs = [_softmax(x) for x in lps]
    prior: dict[str, list[float]] = {}
    for o in form.orders:
        rows = [probs[len(plan) + i] for i, (oo, _) in enumerate(cf_plan) if oo == o]
        prior[o] = (
            [sum(r[k] for r in rows) / len(rows) for k in range(len(labels))]
            if rows
            else [1 / len(labels)] * len(labels)
        )
    obs = []
    for (it, vid, _, pol, o), p in zip(plan, probs[: len(plan)], strict=True):
        q = [x / max(pi, 1e-12) for x, pi in zip(p, prior[o], strict=True)]
        s = sum(q)
        obs.append(Observation(it.id, vid, o, pol, probs=[x / s for x in q], raw_probs=p))
    settings = form.settings(letters) | {
        "answer": "letters" if letters else "text",
        "calibration": "content-free prior divided out" if calibrate else "none",
        "content_free": list(CONTENT_FREE) if calibrate else [],
    }
    return TrackRun("logprob", obs, settings, {o: [round(x, 6) for x in v] for o, v in prior.items()})


@dataclass(frozen=True)
class Decoding:
    """How the generating tracks (choice, open) decode: greedy at temperature 0, else ``samples`` answers per
    prompt, seeded."""

    max_new_tokens: int
    temperature: float = 0.0
    samples: int = 1
    seed: int = 0

    @property
    def n_samples(self) -> int:
        """Answers per prompt: ``samples`` when sampling, one when greedy."""
        return self.samples if self.temperature > 0 else 1

    def tag(self, variant_id: str, sample: int) -> str:
        """An observation's variant tag: the variant id, with ``#sN`` when there are several samples."""
        return variant_id if self.n_samples == 1 else f"{variant_id}#s{sample}"

    def answer(self, backend: Backend, prompts: list[str], sample: int) -> list[str | None]:
        """Sample ``sample``'s answers to ``prompts`` (seed ``seed + sample``)."""
        return backend.generate(
            prompts, max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed + sample
        )

    def settings(self) -> dict[str, Any]:
        """As a track records them (``samples``: the answers per prompt)."""
        return asdict(self) | {"samples": self.n_samples}


def run_choice(
    backend: Backend, inst: Instrument, form: ClosedForm, decoding: Decoding = Decoding(12)
) -> TrackRun:
    labels = inst.labels
    plan, prompts = form.ask(inst, letters=False)
    obs = []
    for s in range(decoding.n_samples):

        def answer(idx: list[int], s: int = s) -> list[str | None]:
            return decoding.answer(backend, [prompts[i] for i in idx], s)

        texts = _per_order(answer, [o for *_, o in plan])
        for (it, vid, _, pol, o), text in zip(plan, texts, strict=True):
            tag = decoding.tag(vid, s)
            if text is None:
                obs.append(Observation(it.id, tag, o, pol, status="unscored"))
                continue
            k = parse_choice(text, labels)
            if k is not None:
                onehot = [0.0] * len(labels)
                onehot[k] = 1.0
                obs.append(Observation(it.id, tag, o, pol, probs=onehot, text=text))
            else:
                obs.append(
                    Observation(
                        it.id, tag, o, pol, status="refused" if is_refusal(text) else "unparsed", text=text
                    )
                )
    return TrackRun("choice", obs, form.settings(letters=False) | decoding.settings())


def run_open(
    backend: Backend,
    inst: Instrument,
    templates: Templates,
    scorer: OpenScorer,
    variants: Sequence[str] = ("text",),
    decoding: Decoding = Decoding(80),
) -> TrackRun:
    plan = [(it, vid, stmt, pol) for it in inst.items for vid, stmt, pol in it.variants(tuple(variants))]
    prompts = [open_prompt(templates, stmt) for _, _, stmt, _ in plan]
    obs: list[Observation] = []
    for s in range(decoding.n_samples):
        texts = decoding.answer(backend, prompts, s)
        # (item, polarity, observation, answer, prompt) of each answer to read
        batch: list[tuple[Item, int, Observation, str, str]] = []
        for (it, vid, _, pol), text, prompt in zip(plan, texts, prompts, strict=True):
            tag = decoding.tag(vid, s)
            if text is None:
                obs.append(Observation(it.id, tag, "-", pol, status="unscored"))
            elif is_refusal(text):
                obs.append(Observation(it.id, tag, "-", pol, status="refused", text=text))
            else:
                o = Observation(it.id, tag, "-", pol, text=text)
                obs.append(o)
                batch.append((it, pol, o, text, prompt))
        for axis in inst.axes:
            todo = [(it, pol, o, t, p) for it, pol, o, t, p in batch if it.axis == axis]
            if todo:
                _read_leans(scorer, axis, todo)
    settings = {
        "variants": list(variants),
        **decoding.settings(),
        "scorer": getattr(scorer, "name", type(scorer).__name__),
        "template": {"open": templates.open},
    }
    return TrackRun("open", obs, settings)


def _read_leans(
    scorer: OpenScorer, axis: str, todo: Sequence[tuple[Item, int, Observation, str, str]]
) -> None:
    """Set each observation's lean on ``axis``: the stance scorer's lean, or for an agreement reader the item's
    key x the variant's polarity x the answer's agreement with the statement asked."""
    texts, prompts = [t for *_, t, _ in todo], [p for *_, p in todo]
    if isinstance(scorer, AgreementScorer):
        agree = scorer.agreement(texts, prompts)
        leans = [
            None if a is None else it.lean_of(a, pol) for (it, pol, *_), a in zip(todo, agree, strict=True)
        ]
    else:
        leans = scorer.lean(texts, axis, prompts)
    for (_, _, o, _, _), lean in zip(todo, leans, strict=True):
        if lean is None or (isinstance(lean, float) and math.isnan(lean)):
            o.status = "unscored"
        else:
            o.lean = max(-1.0, min(1.0, float(lean)))
