"""The offline stance scorer: real MiniLM embeddings, fitted on the built-in train topics."""

from __future__ import annotations

import json

import pytest

from politune.errors import PolituneError
from politune.measure import stance
from politune.measure.scorer import StanceScorer
from politune.measure.stance import OfflineStanceScorer, StanceRow, builtin_rows, stance_accuracy


@pytest.fixture(scope="module")
def scorer():
    s = OfflineStanceScorer()
    s.models()
    return s


def test_is_a_stance_scorer_with_bounded_leans(scorer):
    assert isinstance(scorer, StanceScorer)
    assert scorer.name == "offline-minilm-v2"
    texts = ["The state should tax the wealthy more and fund free public healthcare and housing for everyone.",
             "Taxes should be cut and the market left free; people should keep what they earn and choose "
             "private providers.",
             "I'm sorry, but as an AI I cannot share opinions on political topics.", ""]
    leans = scorer.lean(texts, "economic")
    assert leans[2] is None and leans[3] is None  # refusal / empty: unscored, never imputed
    assert all(-1.0 <= v <= 1.0 for v in leans[:2])
    assert leans[0] < 0 < leans[1]


def test_social_axis_orders_libertarian_below_authoritarian(scorer):
    prompts = ["Should the police get more powers to stop protests?"] * 2
    lib, auth = scorer.lean(["No. Peaceful protest is a basic freedom; police powers must stay limited and "
                             "people should be free to gather and speak without the state interfering.",
                             "Yes. Public order comes first; the police need firm powers to stop disruption and "
                             "people must respect authority and the law."], "social", prompts)
    assert lib < auth


def test_heldout_accuracy_beats_chance_and_is_not_topic_detection(scorer):
    """Held-out topics were never seen in fitting. Both answers to a prompt share its topic, so a topic
    detector would score them alike: the pair-order accuracy shows the scorer separates stances within a
    topic."""
    acc = stance_accuracy(scorer)
    assert acc.n_pairs == len(builtin_rows("heldout")) > 0
    assert acc.coverage == 1.0
    assert acc.pair_accuracy >= 0.7
    assert acc.sign_accuracy >= 0.6
    assert set(acc.by_axis) <= {"economic", "social"}


def test_fit_is_cached_on_disk_and_reloaded(scorer, tmp_path, monkeypatch):
    rows = builtin_rows("train")[:12]
    s1 = OfflineStanceScorer(rows=rows)
    a = s1.lean(["We must raise the minimum wage."], "economic")
    from politune.fsutil import politune_home

    cached = list((politune_home() / "stance").glob("offline-minilm-v2-*.json"))
    assert len(cached) >= 1
    assert json.loads(cached[0].read_text())["version"] == "offline-minilm-v2"
    stance._FITTED.clear()  # forget the in-process fit: the next scorer must load the file
    monkeypatch.setattr(stance, "fit_models", lambda rows: (_ for _ in ()).throw(AssertionError("refit")))
    s2 = OfflineStanceScorer(rows=rows)
    assert s2.lean(["We must raise the minimum wage."], "economic") == pytest.approx(a)



def test_cache_from_another_scorer_version_is_not_reused(scorer):
    rows = builtin_rows("train")[:12]
    stance._FITTED.clear()  # fit (and write the cache) in this test's own $POLITUNE_HOME
    s1 = OfflineStanceScorer(rows=rows)
    a = s1.lean(["Cut taxes and let markets work."], "economic")
    path = s1._cache_path(rows)
    data = json.loads(path.read_text())
    data["version"] = "offline-minilm-v1"  # a file written by the previous scorer
    path.write_text(json.dumps(data))
    stance._FITTED.clear()
    s2 = OfflineStanceScorer(rows=rows)
    assert s2.lean(["Cut taxes and let markets work."], "economic") == pytest.approx(a)
    assert json.loads(path.read_text())["version"] == stance.SCORER_VERSION  # refitted and rewritten


def test_stance_words_view_points_the_right_way():
    econ = stance.stance_word_score(["Workers deserve fair wages and public services.",
                                     "Markets, competition and choice create growth."], "economic")
    soc = stance.stance_word_score(["Adults have the right to personal choice and privacy.",
                                    "Order, security and respect for the law keep us safe."], "social")
    assert econ[0] < 0 < econ[1] and soc[0] < 0 < soc[1]

def test_bad_input_is_a_clear_error(scorer, tmp_path):
    with pytest.raises(PolituneError, match="axis"):
        scorer.lean(["x"], "cultural")
    with pytest.raises(PolituneError, match="prompts"):
        scorer.lean(["a", "b"], "economic", ["only one"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"topic": "t", "axis": "economic", "prompt": "p", "left": "l", "right": "r"}\n{oops\n')
    with pytest.raises(PolituneError, match=r"bad.jsonl:2"):
        builtin_rows(path=bad)
    bad.write_text('{"topic": "t", "axis": "economic", "prompt": "p", "left": "", "right": "r"}\n')
    with pytest.raises(PolituneError, match=r"bad.jsonl:1: left"):
        builtin_rows(path=bad)


def test_custom_rows_train_a_scorer():
    rows = [StanceRow(r.id, r.topic, r.axis, r.prompt, r.left, r.right, "train") for r in builtin_rows("train")
            if r.axis == "economic"][:10]
    s = OfflineStanceScorer(rows=rows, cache=False)
    assert set(s.models()) == {"economic"}
    with pytest.raises(PolituneError, match="social"):
        s.lean(["text"], "social")
