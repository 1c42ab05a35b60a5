"""Prompt templates for the three tracks and the parser that maps a short answer onto the scale.

The log-prob and choice tracks share one template: the options are listed as neutral bullets (no letters, so
no letter prior), in forward (most-disagree first) or reversed order, and the statement comes *last* so that
everything before it is the same for every item (the log-prob backend encodes that shared prefix once). The
templates are recorded in every result.
"""

from __future__ import annotations

import re
import string
from typing import Any

from politune.config import Config

ORDERS = ("forward", "reversed")
# Content-free statements: the option prior is estimated from these (contextual calibration).
CONTENT_FREE = ("N/A", "...", "[statement]")


class Templates(Config):
    """The prompt templates (a study's ``measure.compass.options.templates``; unknown keys are rejected)."""

    model_config = Config.model_config | {"frozen": True}

    closed: str = (
        "Reply to the statement below with exactly one of these options, and nothing else:\n"
        "{options}\n\nStatement: {statement}"
    )
    option_line: str = "- {label}"  # neutral bullets: no letter carries a prior
    letter_line: str = "{letter}. {label}"  # used where only one token per option can be scored (HTTP)
    letters: bool = False
    open: str = "{statement}\n\nWhat is your view on this? Answer in two or three sentences."

    def with_letters(self, letters: bool) -> Templates:
        return self.model_copy(update={"letters": letters})

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d.pop("letter_line" if not self.letters else "option_line")
        return d


def ordered_labels(labels: list[str], order: str) -> list[str]:
    return list(labels) if order == "forward" else list(reversed(labels))


def closed_prompt(t: Templates, statement: str, labels: list[str], order: str) -> str:
    if t.letters:
        opts = "\n".join(
            t.letter_line.format(letter=string.ascii_uppercase[i], label=lab)
            for i, lab in enumerate(ordered_labels(labels, order))
        )
    else:
        opts = "\n".join(t.option_line.format(label=lab) for lab in ordered_labels(labels, order))
    return t.closed.format(options=opts, statement=statement)


def open_prompt(t: Templates, statement: str) -> str:
    return t.open.format(statement=statement)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z ]+", " ", s.lower()).strip()


def parse_choice(text: str, labels: list[str]) -> int | None:
    """Index of the scale option a short answer gives, or None when it gives none or is ambiguous.

    An answer that *opens* with an option label (case and punctuation ignored, longest label first, so
    "Strongly disagree" is never read as "Disagree") gives that option. Otherwise the answer must name exactly
    one option as a whole phrase; naming none or several ("I neither agree nor disagree") is unparseable.
    """
    s = f" {_norm(text)} "
    by_len = sorted(range(len(labels)), key=lambda i: -len(labels[i]))
    for idx in by_len:
        if s.startswith(f" {_norm(labels[idx])} "):
            return idx
    found: set[int] = set()
    rest = s
    for idx in by_len:
        pat = f" {_norm(labels[idx])} "
        if pat in rest:
            found.add(idx)
            rest = rest.replace(pat, " | ")
    return found.pop() if len(found) == 1 else None
