"""The offline agreement reader: how far an answer agrees with the proposition it was asked, in [-1, 1].

Why it exists: on a questionnaire (the compass's open track) every prompt states a proposition whose key the
instrument gives (which pole agreeing takes), so an answer's lean is ``key x agreement``. Reading agreement
is a reading task, not a knowledge task: it needs no map of which policy sits at which pole, the knowledge
SmolLM2-sized encoders lack and that holds the stance probe (:mod:`politune.measure.stance`) near 0.6 on the
gold set (docs/judges.md). On the gold set's compass answers (test half) this reader's ``key x agreement``
has sign accuracy 0.67 / 0.81 (economic / social) where the stance probe has 0.54 / 0.48.

How it works (as the stance probe, one layer, one three-class probe):

1. each (prompt, answer) pair is a chat turn through SmolLM2-135M-Instruct; the feature is the mean hidden
   state of layer :data:`LAYER` (:func:`politune.measure.stance.features`, memoized with the probe's);
2. a logistic regression with classes disagree / neither / agree on standardised features; agreement =
   P(agree) - P(disagree), so an answer that takes no side, rambles or refuses lands near 0;
3. fitted on ``measure/corpus/agree-v1.jsonl`` only: 787 answers, 584 by two writers to 73 propositions of
   their own (each writer saw only ``agree-spec-v1.md``) and 203 of lean-v1's reactions to propositions
   (writer ``w4``, agreement from its style label); no proposition near one of the built-in instrument's
   (corpus README). Layer and regularisation were chosen on the gold set's dev half.

The fitted probe ships as ``measure/corpus/agree-probe-v1.json``, tied to the corpus by hash; another corpus
(``AgreementReader(corpus=FILE)``) is fitted on first use and cached in ``$POLITUNE_HOME/stance/``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from politune.errors import PolituneError
from politune.fsutil import sha256_text
from politune.measure.stance import (
    AxisProbe,
    corpus_rows,
    encoder_precision,
    fit_axis_probe,
    load_or_fit,
    memo_features,
)

READER_VERSION = "offline-agree-v1"
LAYER = 16  # index into the encoder's hidden_states; chosen on gold dev (12, 16, 19, 22 measured)
C = 0.01  # inverse L2 strength of the logistic regression (0.01, 0.1 measured)


def agreement_corpus_path() -> Path:
    return Path(str(resources.files("politune.measure") / "corpus" / "agree-v1.jsonl"))


def load_agreement_corpus(path: str | Path | None = None) -> list[tuple[str, str, int]]:
    """``(prompt, text, agreement in -2..2)`` per row of an agreement corpus (default: the shipped one)."""
    p = Path(path) if path is not None else agreement_corpus_path()
    out = []
    for n, d in corpus_rows(p, "agreement"):
        a = d.get("agreement")
        if not isinstance(a, int) or isinstance(a, bool) or not -2 <= a <= 2:
            raise PolituneError(f"{p}:{n}: agreement: expected an integer in -2..2, got {a!r}")
        out.append((d["prompt"], d["text"], a))
    return out


def _hash(rows: Sequence[tuple[str, str, int]]) -> str:
    return sha256_text(json.dumps([list(r) for r in rows] + [[LAYER, C]]))[:16]


def fit_reader(rows: Sequence[tuple[str, str, int]]) -> AxisProbe:
    """Fit the three-class probe (disagree / neither / agree) on ``rows``."""
    x = memo_features([t for _, t, _ in rows], [p for p, _, _ in rows], LAYER)
    labels = [a for *_, a in rows]
    if set(np.sign(labels)) != {-1, 0, 1}:
        raise PolituneError("agreement corpus: needs answers that disagree, take no side and agree")
    return fit_axis_probe(x, labels, LAYER, C)


def shipped_reader_path() -> Path:
    return Path(str(resources.files("politune.measure") / "corpus" / "agree-probe-v1.json"))


class AgreementReader:
    """Agreement of each answer with the proposition its prompt states, in [-1, 1] (see the module doc).
    Empty answers and refusals read ``None``: missing, never imputed."""

    name = READER_VERSION

    def __init__(self, corpus: str | Path | None = None):
        self._corpus = corpus
        self._probe: AxisProbe | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """What the encoder computes in here (:func:`politune.measure.stance.encoder_precision`)."""
        return encoder_precision()

    def probe(self) -> AxisProbe:
        with self._lock:
            if self._probe is None:
                rows = load_agreement_corpus(self._corpus)
                fitted = load_or_fit(
                    READER_VERSION,
                    _hash(rows),
                    shipped_reader_path(),
                    lambda: {"agreement": fit_reader(rows)},
                )
                self._probe = fitted["agreement"]
            return self._probe

    def agreement(self, texts: Sequence[str], prompts: Sequence[str]) -> list[float | None]:
        if len(prompts) != len(texts):
            raise PolituneError(f"agreement: {len(texts)} texts but {len(prompts)} prompts")
        from politune.measure.refusal import is_refusal

        keep = [i for i, t in enumerate(texts) if t is not None and t.strip() and not is_refusal(t)]
        out: list[float | None] = [None] * len(texts)
        if keep:
            x = memo_features([texts[i] for i in keep], [prompts[i] for i in keep], LAYER)
            for i, v in zip(keep, self.probe().lean(x), strict=True):
                out[i] = float(v)
        return out
