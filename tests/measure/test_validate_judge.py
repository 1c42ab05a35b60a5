"""Judging judges: the gold file reader, the statistics of validate_scorer, and the CLI."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from politune.errors import PolituneError
from politune.measure.validate_judge import load_gold, validate_axis, validate_scorer


def _row(
    i: int, source: str, econ: list[int], social: list[int], split: str = "test", text: str = ""
) -> dict:
    return {
        "id": f"g{i:04d}",
        "split": split,
        "source": source,
        "kind": "topic",
        "prompt": f"question {i}",
        "text": text or f"answer {i}",
        "ratings": {"economic": econ, "social": social},
    }


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class SignOfWord:
    """A scorer that reads a lean from the words 'left' / 'right' in the text (0 otherwise)."""

    name = "words"

    def lean(self, texts, axis, prompts=None):
        return [
            -0.8 if "left" in t else 0.8 if "right" in t else (None if "refuse" in t else 0.0) for t in texts
        ]


def test_sign_accuracy_counts_only_rated_items_and_abstentions_as_misses(tmp_path):
    rows = [
        _row(1, "base", [-2, -1], [0, 0], text="left"),  # rated left, scorer left: hit
        _row(2, "base", [2, 2], [0, 0], text="right"),  # rated right, scorer right: hit
        _row(3, "left", [2, 1], [0, 0], text="left"),  # rated right, scorer left: miss
        _row(4, "right", [-1, -1], [0, 0], text="neutral"),  # rated left, scorer 0: miss
        _row(5, "right", [0, 1], [0, 0], text="right"),  # gold mean 0.5: rated
        _row(6, "base", [0, 0], [0, 0], text="right"),
    ]  # gold 0: not in sign accuracy
    items = load_gold(_write(tmp_path / "g.jsonl", rows))
    v = validate_axis(items, SignOfWord().lean([it.text for it in items], "economic"), "economic", n_boot=200)
    assert v.sign_accuracy.n == 5
    assert v.sign_accuracy.value == pytest.approx(3 / 5)
    lo, hi = v.sign_accuracy.ci
    assert lo <= 0.6 <= hi
    assert v.sign_accuracy_by_source["base"].value == 1.0 and v.sign_accuracy_by_source["left"].value == 0.0
    # tuned adapters (left, right): 1 hit of 3; others: 2 of 2
    assert v.style_gap.value == pytest.approx(1 / 3 - 1.0)
    # bias of 'base' = mean(lean - gold/2) = ((-0.8+0.75) + (0.8-1.0) + (0.8-0)) / 3
    assert v.bias["base"].value == pytest.approx(((-0.8 + 0.75) + (0.8 - 1.0) + 0.8) / 3)


def test_spearman_perfect_and_reversed(tmp_path):
    rows = [
        _row(i, "base", [g, g], [0, 0], text=t)
        for i, (g, t) in enumerate(
            [(-2, "left"), (0, "neutral"), (2, "right"), (-1, "left"), (1, "right"), (0, "x")]
        )
    ]
    items = load_gold(_write(tmp_path / "g.jsonl", rows))
    good = validate_scorer(SignOfWord(), items, n_boot=100).axes["economic"]
    assert good.spearman.value > 0.9 and good.sign_accuracy.value == 1.0

    class Flipped(SignOfWord):
        def lean(self, texts, axis, prompts=None):
            return [None if v is None else -v for v in super().lean(texts, axis, prompts)]

    bad = validate_scorer(Flipped(), items, n_boot=100).axes["economic"]
    assert bad.spearman.value < -0.9 and bad.sign_accuracy.value == 0.0


def test_refusal_none_is_dropped_from_rho_and_lowers_coverage(tmp_path):
    rows = [
        _row(1, "base", [-2, -2], [0, 0], text="left"),
        _row(2, "base", [2, 2], [0, 0], text="right"),
        _row(3, "base", [0, 0], [0, 0], text="neutral"),
        _row(4, "base", [1, 1], [0, 0], text="refuse"),
    ]
    items = load_gold(_write(tmp_path / "g.jsonl", rows))
    v = validate_scorer(SignOfWord(), items, n_boot=100).axes["economic"]
    assert v.coverage == 0.75 and v.spearman.n == 3
    assert v.sign_accuracy.value == pytest.approx(2 / 3)  # the unscored rated item counts as a miss


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"split": "train"}, "split: expected one of dev, test"),
        (
            {"ratings": {"economic": [3], "social": [0]}},
            "ratings.economic: expected a non-empty list of integers",
        ),
        ({"ratings": {"economic": [1]}}, "ratings: expected an object with keys economic, social"),
        ({"text": None}, "text: expected a string"),
    ],
)
def test_bad_gold_rows_name_file_line_and_field(tmp_path, bad, msg):
    rows = [_row(1, "base", [0], [0]), {**_row(2, "base", [0], [0]), **bad}]
    path = _write(tmp_path / "g.jsonl", rows)
    with pytest.raises(PolituneError, match=rf"g\.jsonl:2: {msg}"):
        load_gold(path)


def test_shipped_gold_set_has_both_halves_and_two_raters_per_item():
    dev, test = load_gold(split="dev"), load_gold(split="test")
    assert len(dev) + len(test) >= 400 and min(len(dev), len(test)) >= 150
    assert {it.source for it in test} >= {"base", "left", "right"}
    for it in dev + test:
        assert min(len(it.ratings["economic"]), len(it.ratings["social"])) >= 2
    assert not {it.prompt for it in dev} & {it.prompt for it in test}  # split by prompt


def test_cli_validate_judge_prints_table_and_writes_json(tmp_path, monkeypatch, capsys):
    rows = [
        _row(i, "base", [g, g], [0, 0], text=t)
        for i, (g, t) in enumerate(
            [(-2, "left"), (0, "neutral"), (2, "right"), (-1, "left"), (1, "right"), (0, "x")]
        )
    ]
    gold = _write(tmp_path / "g.jsonl", rows)
    monkeypatch.setattr("politune.measure.scorer.scorer_by_name", lambda name: SignOfWord())
    code, out, err = run_cli(
        ["measure", "validate-judge", "--gold", gold, "--out", tmp_path / "v.json"], monkeypatch, capsys
    )
    assert code == 0, err
    assert "sign accuracy" in out and "economic" in out
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["kind"] == "judge-validation" and doc["axes"]["economic"]["sign_accuracy"]["value"] == 1.0
    assert doc["precision"] is None  # a scorer with no encoder of its own records no precision


def test_cli_validate_judge_bad_gold_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": "x"}\n')
    code, out, err = run_cli(["measure", "validate-judge", "--gold", path], monkeypatch, capsys)
    assert code == 2 and "g.jsonl:1: split: expected a string" in err and "Traceback" not in err


def test_validation_note_states_accuracy_or_warns():
    from politune.measure.validate_judge import validated_accuracy, validation_note

    shipped = validated_accuracy("offline-probe-v1")
    assert (
        shipped is not None and shipped["split"] == "test" and set(shipped["axes"]) == {"economic", "social"}
    )
    note = validation_note("offline-probe-v1", shipped)
    econ = shipped["axes"]["economic"]["sign_accuracy"]["value"]
    assert f"economic {econ:.2f}" in note and "test half" in note
    assert validated_accuracy("judge:some-llm/lean-v1") is None
    assert "NOT validated" in validation_note("judge:some-llm/lean-v1", None)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["offline-probe-v1", "offline-agree-v1"])
def test_shipped_validation_is_what_validate_judge_measures(name, smollm2_dir, monkeypatch, tmp_path, capsys):
    """validation-NAME.json (quoted by every report) is reproduced by the command, not typed in."""
    from politune.measure import stance
    from politune.measure.validate_judge import validation_path

    monkeypatch.setattr(stance, "ENCODER", str(smollm2_dir))
    argv = ["measure", "validate-judge", "--scorer", name, "--out", tmp_path / "v.json"]
    code, out, err = run_cli(argv, monkeypatch, capsys)
    assert code == 0, err
    fresh = json.loads((tmp_path / "v.json").read_text())
    shipped = json.loads(validation_path(name).read_text())
    assert fresh["precision"] in ("float32", "bfloat16")
    # the encoder runs in bf16 or fp32 by machine: the same sign accuracy, rho within 7e-4 (docs/judges.md)
    for axis in ("economic", "social"):
        for key, tol in (("sign_accuracy", 1e-3), ("spearman", 5e-3)):
            assert fresh["axes"][axis][key]["value"] == pytest.approx(
                shipped["axes"][axis][key]["value"], abs=tol
            )


def test_agreement_reader_validation_is_on_compass_answers_and_notes_say_so(tmp_path):
    """An agreement reader is scored on the gold answers to instrument propositions only (lean = key x
    agreement), and the note printed next to positions names that subset."""
    from politune.measure.compass.instrument import load_instrument
    from politune.measure.validate_judge import GoldItem, validate_scorer, validation_note

    right = next(it for it in load_instrument("builtin").items if it.axis == "economic" and it.key > 0)
    ask = right.text + "\n\nWhat is your view on this? Answer in two or three sentences."

    def item(i, kind, prompt, text, econ):
        return GoldItem(f"g{i}", "test", "base", kind, prompt, text, {"economic": econ, "social": (0, 0)})

    items = [
        item(0, "compass", ask, "yes", (2, 2)),  # agrees with a right-keyed statement: right
        item(1, "compass", ask, "no", (-1, -2)),
        item(2, "request", "Write an op-ed.", "yes", (2, 2)),  # not a keyed proposition: left out
    ]

    class Words:
        name = "words"

        def agreement(self, texts, prompts):
            return [1.0 if t == "yes" else -1.0 for t in texts]

    res = validate_scorer(Words(), items, split="test").to_dict()
    assert res["n_items"] == 2 and res["items"] == "compass"
    assert res["axes"]["economic"]["sign_accuracy"]["value"] == 1.0
    assert res["axes"]["economic"]["sign_accuracy"]["n"] == 2
    assert "compass answers" in validation_note("words", res)
