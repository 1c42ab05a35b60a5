"""Which of two answers would a named community prefer? The judges of ``politune measure winrate``.

A :class:`Community` is a name the judge is told ("a left-leaning reader", "r/economics readers") and,
optionally, its side (``pole``: ``left`` = economic-left / social-libertarian, ``right`` = economic-right /
social-authoritarian, the built-in data's convention). Two judges answer the same question, "first", "second" or
"tie", for answers shown in a given order:

- :class:`OfflineCommunityJudge` (no network): the offline stance scorer (``politune.measure.stance``) reads
  each answer's lean on the prompt's axis; the community prefers the answer whose lean is further toward its
  pole, and it is a tie when the two leans differ by less than ``margin``. It is only as good as that scorer,
  whose sign accuracy on the blind gold set is ~0.6 (docs/judges.md), and it needs the community's pole.
- :class:`LLMCommunityJudge`: any OpenAI-compatible model through the strict-JSON rubric ``community-v1``
  (``measure/rubrics/``), told the community's name; the pole is not needed.

:func:`compare` runs one comparison (model A vs model B for one community): a seeded random order per prompt,
recorded, so a judge's position bias cannot favour either model and can be measured (``first_slot``; flagged by an
exact sign test, since with a random order an unbiased judge picks the first slot half the time).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from politune.errors import PolituneError
from politune.measure.results_base import MeanCI, ci
from politune.measure.results_compred import WinrateComparison, WinrateEntry, WinrateVerdict
from politune.measure.scorer import AXES, StanceScorer
from politune.measure.stats import bootstrap_ci, sign_test_p

if TYPE_CHECKING:
    from politune.measure.judge import Judge

Pole = Literal["left", "right"]
POLES: tuple[Pole, ...] = ("left", "right")


@dataclass(frozen=True)
class Community:
    name: str  # what the judge is told
    pole: Pole | None = None  # its side (the offline judge needs it)


def stance_community(stance: str) -> Community:
    """The community of a stance name: ``left`` -> "a left-leaning reader" with pole left."""
    if stance not in POLES:
        raise PolituneError(f"stance {stance!r}: expected left or right to name a community")
    return Community(f"a {stance}-leaning reader", stance)


def parse_community(spec: str) -> Community:
    """``left`` / ``right`` (a stance), ``NAME=left|right`` (a named community and its side) or ``NAME``."""
    spec = spec.strip()
    if spec in POLES:
        return stance_community(spec)
    name, _, pole = spec.rpartition("=") if "=" in spec else (spec, "", "")
    name, pole = name.strip(), pole.strip()
    if not name:
        raise PolituneError(f"community {spec!r}: expected NAME, NAME=left|right, left or right")
    if "=" in spec and pole not in POLES:
        raise PolituneError(f"community {spec!r}: side {pole!r}: expected left or right after '='")
    return Community(name, pole or None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WinratePrompt:
    """What a judge needs of one prompt."""

    id: str
    prompt: str
    axis: str | None = None
    topic: str | None = None


@dataclass(frozen=True)
class ShownPair:
    """One prompt's two answers in the order the judge sees them (None: no answer)."""

    item: WinratePrompt
    first: str | None
    second: str | None


@dataclass
class SlotVerdict:
    choice: Literal["first", "second", "tie"] | None = None
    lean_first: float | None = None
    lean_second: float | None = None
    error: str | None = None


class CommunityJudge(Protocol):
    @property
    def name(self) -> str: ...

    def verdicts(self, pairs: Sequence[ShownPair], community: Community) -> list[SlotVerdict]: ...


@dataclass
class OfflineCommunityJudge:
    """The community prefers the answer leaning further toward its pole on the prompt's axis (``default_axis``
    for prompts without one); a tie within ``margin`` (leans are in [-1, 1])."""

    scorer: StanceScorer
    margin: float = 0.1
    default_axis: str = "economic"

    @property
    def name(self) -> str:
        return f"offline:{self.scorer.name} margin={self.margin:g}"

    def verdicts(self, pairs: Sequence[ShownPair], community: Community) -> list[SlotVerdict]:
        if community.pole is None:
            raise PolituneError(
                f"community {community.name!r}: the offline judge needs its side: name it "
                f"'{community.name}=left' or '{community.name}=right', or use an LLM judge (--judge)"
            )
        sign = -1.0 if community.pole == "left" else 1.0
        out = [SlotVerdict() for _ in pairs]
        for axis in AXES:
            idx = [i for i, p in enumerate(pairs) if (p.item.axis or self.default_axis) == axis]
            if not idx:
                continue
            texts = [t or "" for i in idx for t in (pairs[i].first, pairs[i].second)]
            prompts = [pairs[i].item.prompt for i in idx for _ in (0, 1)]
            leans = self.scorer.lean(texts, axis, prompts)
            for k, i in enumerate(idx):
                l1, l2 = leans[2 * k], leans[2 * k + 1]
                out[i] = self._verdict(l1, l2, sign)
        return out

    def _verdict(self, l1: float | None, l2: float | None, sign: float) -> SlotVerdict:
        if l1 is None or l2 is None:
            return SlotVerdict(None, l1, l2, "an answer could not be scored (empty or a refusal)")
        d = sign * (l1 - l2)  # > 0: the first answer leans further toward the community's pole
        choice: Literal["first", "second", "tie"] = (
            "first" if d > self.margin else "second" if d < -self.margin else "tie"
        )
        return SlotVerdict(choice, l1, l2)


@dataclass
class LLMCommunityJudge:
    """A :class:`~politune.measure.judge.Judge` asked through the ``community`` rubric."""

    judge: Judge

    @property
    def name(self) -> str:
        return self.judge.label()

    def verdicts(self, pairs: Sequence[ShownPair], community: Community) -> list[SlotVerdict]:
        responses = [
            json.dumps(
                {"request": p.item.prompt, "response_1": p.first or "", "response_2": p.second or ""},
                ensure_ascii=False,
            )
            for p in pairs
        ]
        fields = [{"community": json.dumps(community.name, ensure_ascii=False)} for _ in pairs]
        return [
            SlotVerdict(v.value if v.error is None else None, error=v.error)
            for v in self.judge.rate("community", responses, fields)
        ]


# ------------------------------------------------------------------------------------------------ one comparison


def first_slot_of(seed: int, a: str, b: str, community: str, item_id: str) -> Literal["a", "b"]:
    """Whose answer is shown first for one prompt of one comparison: seeded, so a re-run shows the same order."""
    return "a" if random.Random(f"{seed}:{a}:{b}:{community}:{item_id}").random() < 0.5 else "b"


def _mean_ci(values: Sequence[float], seed: int) -> MeanCI:
    return MeanCI(
        mean=sum(values) / len(values) if values else None,
        ci=ci(bootstrap_ci(values, seed=seed)),
        n=len(values),
    )


def _row(item: WinratePrompt, first: Literal["a", "b"], v: SlotVerdict) -> WinrateVerdict:
    winner: Literal["a", "b", "tie"] | None = None
    if v.choice == "tie":
        winner = "tie"
    elif v.choice is not None:
        picked_first = v.choice == "first"
        winner = first if picked_first else ("b" if first == "a" else "a")
    score = None if winner is None else {"a": 1.0, "tie": 0.5, "b": 0.0}[winner]
    return WinrateVerdict(
        id=item.id,
        topic=item.topic,
        axis=item.axis,
        first=first,
        choice=v.choice,
        winner=winner,
        score=score,
        lean_first=v.lean_first,
        lean_second=v.lean_second,
        error=v.error,
    )


def compare(
    a: WinrateEntry,
    b: WinrateEntry,
    items: Sequence[WinratePrompt],
    community: Community,
    judge: CommunityJudge,
    seed: int = 0,
) -> WinrateComparison:
    """Model ``a`` vs model ``b`` on ``items`` for ``community``: each prompt's two answers in a seeded random
    order, the judge's verdict, A's win-rate (win 1, tie 0.5) and the judge's first-slot share, with CIs."""
    ans_a = {x.id: x.answer for x in a.answers}
    ans_b = {x.id: x.answer for x in b.answers}
    na, nb = a.target.name, b.target.name
    order = [first_slot_of(seed, na, nb, community.name, it.id) for it in items]
    shown = [
        ShownPair(it, ans_a.get(it.id), ans_b.get(it.id))
        if o == "a"
        else ShownPair(it, ans_b.get(it.id), ans_a.get(it.id))
        for it, o in zip(items, order, strict=True)
    ]
    rows = [_row(it, o, v) for it, o, v in zip(items, order, judge.verdicts(shown, community), strict=True)]
    scores = [r.score for r in rows if r.score is not None]
    decisive = [float(r.choice == "first") for r in rows if r.choice in ("first", "second")]
    slot = _mean_ci(decisive, seed)
    slot_p = sign_test_p(int(sum(decisive)), len(decisive))
    axes = sorted({r.axis for r in rows if r.axis})
    return WinrateComparison(
        a=na,
        b=nb,
        community=community.name,
        pole=community.pole,
        win_rate=_mean_ci(scores, seed),
        wins=sum(r.winner == "a" for r in rows),
        ties=sum(r.winner == "tie" for r in rows),
        losses=sum(r.winner == "b" for r in rows),
        coverage=len(scores) / len(rows) if rows else None,
        first_slot=slot,
        first_slot_p=slot_p,
        position_bias=slot_p < 0.05,
        by_axis={
            ax: _mean_ci([r.score for r in rows if r.axis == ax and r.score is not None], seed) for ax in axes
        },
        verdicts=rows,
    )
