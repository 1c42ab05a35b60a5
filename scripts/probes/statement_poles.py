"""Does a small model know which pole a political statement sits at? (docs/tune.md, issue #14)

A linear probe (standardised features, logistic regression with its regularisation chosen by inner CV) is
fitted on the built-in statement set's keys (``builtin:statements-*``: which side agrees with each statement)
and tested two ways: leaving one writer out (a writer's statements are never both fitted on and tested), and
on the 64 propositions of the built-in compass instrument (fitted on all 425 statements). Features: the mean
hidden state of SmolLM2-135M-Instruct at several layers (the offline scorer's encoder), and MiniLM sentence
embeddings. Accuracy near 0.5 means the model does not know the political map an adapter would need to
take a side on statements it was never tuned on.

    python scripts/probes/statement_poles.py          # ~1 min on 2 cores
"""

from __future__ import annotations

import json
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from politune.data.builtin import builtin_path
from politune.measure.compass.instrument import load_instrument
from politune.measure.embedding import embed
from politune.measure.stance import features

LAYERS = (6, 12, 19, 24, 30)


def _probe() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, max_iter=3000))


def _accuracies(x: np.ndarray, y: np.ndarray, writers: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> str:
    held = []
    for w in np.unique(writers):
        fit = writers != w
        held.append(float((_probe().fit(x[fit], y[fit]).predict(x[~fit]) == y[~fit]).mean()))
    instrument = float((_probe().fit(x, y).predict(xt) == yt).mean())
    per_writer = " ".join(f"{w} {a:.2f}" for w, a in zip(np.unique(writers), held, strict=True))
    return f"leave one writer out {np.mean(held):.2f} ({per_writer}) | instrument {instrument:.2f}"


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    lines = builtin_path("statements-left").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    statements = [r["statement"] for r in rows]
    y = np.array([r["key"] == "right" for r in rows])
    writers = np.array([r["writer"] for r in rows])
    items = load_instrument("builtin").items
    texts = [it.text for it in items]
    yt = np.array([it.key > 0 for it in items])
    print(f"{len(rows)} statements from {len(set(writers))} writers; {len(items)} instrument propositions")
    hidden, hidden_t = features(statements, None, LAYERS), features(texts, None, LAYERS)
    for layer in LAYERS:
        print(f"SmolLM2-135M layer {layer:2d}: {_accuracies(hidden[layer], y, writers, hidden_t[layer], yt)}")
    print(f"MiniLM-L6 embeddings: {_accuracies(embed(statements), y, writers, embed(texts), yt)}")


if __name__ == "__main__":
    main()
