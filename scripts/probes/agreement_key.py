"""Can an offline reader score compass answers as agreement x the proposition's key? (docs/judges.md, issue #14)

Reads whether an answer agrees with the proposition it was asked (three classes: disagree / neither / agree),
then lean = key x (P(agree) - P(disagree)): agreement is a reading task that needs no political map. Fitted on
the ``w4`` part of the lean corpus (reactions to propositions; the writer's style label gives the agreement),
features are MiniLM embeddings of the answer and answer x prompt. Scored on the gold set's compass items (the
instrument gives each proposition's key), dev and test halves, sign accuracy over answers rated non-neutral.

    python scripts/probes/agreement_key.py        # ~1 min on 2 cores
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from politune.measure.compass.instrument import load_instrument
from politune.measure.embedding import embed
from politune.measure.stance import corpus_path
from politune.measure.validate_judge import load_gold

AGREEMENT = {"agree-strong": 1, "agree": 1, "partly": 1, "disagree": -1, "disagree-strong": -1}
C = 0.01


def _features(prompts: list[str], texts: list[str]) -> np.ndarray:
    answer, prompt = embed(texts), embed(prompts)
    return np.hstack([answer, answer * prompt])


def main() -> None:
    rows = [json.loads(x) for x in corpus_path().read_text(encoding="utf-8").splitlines() if x.strip()]
    w4 = [r for r in rows if r["id"].startswith("w4")]
    y = np.array([AGREEMENT.get(r["style"], 0) for r in w4])
    fit = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    fit.fit(_features([r["prompt"] for r in w4], [r["text"] for r in w4]), y)
    instrument = {it.text.strip(): it for it in load_instrument("builtin").items}
    for split in ("dev", "test"):
        items = [g for g in load_gold(split=split) if g.kind == "compass"]
        p = fit.predict_proba(_features([g.prompt for g in items], [g.text for g in items]))
        classes = list(fit.classes_)
        agree = p[:, classes.index(1)] - p[:, classes.index(-1)]
        asked = [instrument[g.prompt.split("\n\n")[0].strip()] for g in items]
        lean = np.array([it.key for it in asked]) * agree
        out = []
        for axis in ("economic", "social"):
            gold = np.array([g.gold(axis) for g in items])
            on = np.array([it.axis == axis for it in asked]) & (np.abs(gold) >= 0.5)
            acc = float(np.mean(np.sign(lean[on]) == np.sign(gold[on])))
            out.append(f"{axis} {acc:.2f} (n {int(on.sum())})")
        print(f"{split}: " + ", ".join(out))


if __name__ == "__main__":
    main()
