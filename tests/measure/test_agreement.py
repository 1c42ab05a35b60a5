"""The offline agreement reader: what the compass's open track reads (lean = key x agreement)."""

from __future__ import annotations

import json

import pytest

from politune.errors import PolituneError
from politune.measure import agreement
from politune.measure.agreement import READER_VERSION, load_agreement_corpus
from politune.measure.compass.instrument import load_instrument
from politune.measure.scorer import AgreementScorer


def test_shipped_reader_belongs_to_the_shipped_corpus():
    doc = json.loads(agreement.shipped_reader_path().read_text())
    assert doc["version"] == READER_VERSION
    assert doc["corpus_hash"] == agreement._hash(load_agreement_corpus())  # else it would silently refit
    assert doc["axes"]["agreement"]["layer"] == agreement.LAYER


def test_corpus_has_every_class_and_no_instrument_statement():
    rows = load_agreement_corpus()
    signs = [min(1, max(-1, a)) for *_, a in rows]
    assert {s: signs.count(s) for s in (-1, 0, 1)} == {-1: 297, 0: 189, 1: 301}
    statements = {
        t.strip().lower() for it in load_instrument("builtin").items for t in (it.text, *it.paraphrases)
    }
    assert not any(s in p.lower() for p, _, _ in rows for s in statements)


def test_bad_corpus_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "agree.jsonl"
    path.write_text(json.dumps({"prompt": "p", "text": "t", "agreement": 3}) + "\n")
    with pytest.raises(PolituneError, match=r"agree.jsonl:1: agreement: expected an integer in -2..2, got 3"):
        load_agreement_corpus(path)


def test_reader_is_an_agreement_scorer_and_leaves_refusals_unread(monkeypatch):
    reader = agreement.AgreementReader()
    assert isinstance(reader, AgreementScorer) and reader.name == READER_VERSION
    monkeypatch.setattr(agreement, "memo_features", lambda *a: pytest.fail("no answer should be encoded"))
    assert reader.agreement(["", "I'm sorry, but I can't share opinions on that."], ["p", "p"]) == [
        None,
        None,
    ]
    with pytest.raises(PolituneError, match="2 texts but 1 prompts"):
        reader.agreement(["a", "b"], ["p"])
