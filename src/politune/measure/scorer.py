"""The stance-scorer interface that the compass's open track, topic scores and data generation share.

Sign convention used everywhere in politune (the Political Compass's):
- ``economic``: -1 = left, +1 = right;
- ``social``:   -1 = libertarian, +1 = authoritarian.

A scorer returns a lean in [-1, 1] per text, or ``None`` when it cannot score one (a refusal, an empty answer,
a judge failure): missing values are reported, never imputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

AXES = ("economic", "social")


@runtime_checkable
class StanceScorer(Protocol):
    name: str  # recorded in results (e.g. "offline-probe-v1", "judge:gpt-4o/lean-v1")

    def lean(
        self, texts: Sequence[str], axis: str, prompts: Sequence[str] | None = None
    ) -> list[float | None]:
        """Lean of each text on ``axis`` in [-1, 1]; ``prompts`` (the question each text answers) give context."""
        ...


@runtime_checkable
class AgreementScorer(Protocol):
    """Reads how far each answer agrees with the proposition its prompt states, in [-1, 1] (+1 agrees). On a
    questionnaire whose items carry a key (the compass), an answer's lean is key x agreement."""

    name: str

    def agreement(self, texts: Sequence[str], prompts: Sequence[str]) -> list[float | None]: ...


OpenScorer = StanceScorer | AgreementScorer  # what reads the compass's open answers


def scorer_by_name(name: str | None = None) -> StanceScorer:
    """An offline stance scorer by name (``None`` or ``"offline"``: the default, validated one)."""
    from politune.errors import PolituneError, did_you_mean
    from politune.measure.stance import SCORER_VERSION, OfflineStanceScorer

    names = {"offline": OfflineStanceScorer, SCORER_VERSION: OfflineStanceScorer}
    key = name or "offline"
    if key not in names:
        raise PolituneError(
            f"unknown scorer {key!r}: expected one of {', '.join(names)}{did_you_mean(key, names)}"
        )
    return names[key]()
