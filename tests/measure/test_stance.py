"""The offline stance scorer: a probe on SmolLM2's hidden states, fitted on the lean corpus (never on the
built-in ideology data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from politune.errors import PolituneError
from politune.measure import stance
from politune.measure.scorer import StanceScorer, scorer_by_name
from politune.measure.stance import AxisProbe, OfflineStanceScorer, load_corpus


def test_corpus_is_balanced_and_independent_of_the_builtin_data():
    rows = load_corpus()
    assert len(rows) >= 1000
    for axis in ("economic", "social"):
        labels = [getattr(r, axis) for r in rows]
        assert labels.count(-2) + labels.count(-1) == pytest.approx(
            labels.count(1) + labels.count(2), rel=0.05
        )
    from politune.data.builtin import builtin_path

    for view in ("left", "statements-left"):  # ideology.jsonl, statements.jsonl
        lines = builtin_path(view).read_text(encoding="utf-8").splitlines()
        answers = {json.loads(x)[s] for x in lines if x.strip() for s in ("left", "right")}
        assert not answers & {r.text for r in rows}  # not fitted on the built-in answers


def test_shipped_probe_matches_the_shipped_corpus():
    doc = json.loads(stance.shipped_probe_path().read_text())
    assert doc["version"] == stance.SCORER_VERSION
    assert doc["corpus_hash"] == stance._corpus_hash(load_corpus())  # else the scorer would silently refit
    assert {a: d["layer"] for a, d in doc["axes"].items()} == stance.LAYERS


def test_axis_probe_is_p_right_minus_p_left():
    p = AxisProbe(0, np.zeros(2), np.ones(2), np.array([[1.0, 0], [0, 0], [-1.0, 0]]), np.zeros(3))
    lean = p.lean(np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 3.0]]))
    assert lean[0] < -0.9 and lean[1] > 0.9 and abs(lean[2]) < 1e-9
    back = AxisProbe.from_dict(json.loads(json.dumps(p.to_dict())))
    assert np.allclose(back.lean(np.eye(2)), p.lean(np.eye(2)))


def test_bad_corpus_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"prompt": "q", "text": "a", "economic": 0, "social": 0}\n'
        '{"prompt": "q", "text": "a", "economic": 3, "social": 0}\n'
    )
    with pytest.raises(PolituneError, match=r"c\.jsonl:2: economic: expected an integer in -2\.\.2"):
        load_corpus(path)


def test_unknown_scorer_name_is_one_line_with_a_hint():
    with pytest.raises(PolituneError, match="unknown scorer 'ofline'.*did you mean 'offline'"):
        scorer_by_name("ofline")


@pytest.mark.slow
def test_scorer_reads_what_an_answer_argues_given_its_prompt(smollm2_dir, monkeypatch):
    monkeypatch.setattr(stance, "ENCODER", str(smollm2_dir))
    s = OfflineStanceScorer()
    assert isinstance(s, StanceScorer) and s.name == "offline-probe-v1"
    econ = s.lean(
        [
            "The state should tax the wealthy far more and fund free public healthcare and housing "
            "for everyone; workers deserve strong unions.",
            "Taxes should be cut and markets left free; people should keep what they earn and choose "
            "private providers instead of state monopolies.",
            "I'm sorry, but as an AI I cannot share opinions on political topics.",
            "",
        ],
        "economic",
    )
    assert econ[2] is None and econ[3] is None  # refusal / empty: unscored, never imputed
    assert -1 <= econ[0] < 0 < econ[1] <= 1
    social = s.lean(
        [
            "No. Peaceful protest is a basic freedom and police powers must stay limited.",
            "Yes. Public order comes first; the police need firm powers and people must respect authority.",
        ],
        "social",
        ["Should the police get more powers to stop protests?"] * 2,
    )
    assert social[0] < social[1]  # ordered; its sign accuracy is ~0.6 (docs/gold.md), so no sign claim here


def test_features_batch_longest_first_and_return_rows_in_input_order(monkeypatch):
    """Batches are formed by length (less padding); each row must still be the features of its own input."""
    from politune.models.tiny import build_tiny_model

    model, tok = build_tiny_model(seed=0)
    monkeypatch.setitem(stance._ENCODER, stance.ENCODER, (model.eval(), tok))
    monkeypatch.setattr(stance, "_BATCH", 2)
    texts = ["a b", "a b c d e f g h i j k l", "a", "a b c d e f", "a b c"]
    prompts = ["q"] * len(texts)
    together = stance.features(texts, prompts, [1, 2])
    for i, t in enumerate(texts):
        alone = stance.features([t], ["q"], [1, 2])
        for layer in (1, 2):
            np.testing.assert_allclose(together[layer][i], alone[layer][0], atol=2e-2)
    # different texts give different rows, so a permutation could not pass
    assert np.abs(together[1][0] - together[1][1]).max() > 1e-2
