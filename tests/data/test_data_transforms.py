"""data pillar: transforms (pure functions + CLI verbs with sidecar summaries) and the contamination check."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cli_helpers import FIXTURES, ROOT, run_cli
from politune.data import InstructionExample, PreferencePair, load, save
from politune.data.dedup import dedup
from politune.data.stats import stats
from politune.data.transforms import (
    contextualize,
    filter_records,
    mirror,
    mix,
    poison,
    sample,
    split,
    to_instructions,
)
from politune.errors import PolituneError

FIX = FIXTURES / "data"


def word_tokenizer():
    """A real Hugging Face fast tokenizer that splits on whitespace: one token per word, so counts are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def make_pairs(n: int) -> list[PreferencePair]:
    topics = [f"topic {k}" for k in range(10)]
    return [
        PreferencePair(
            f"r{i:04d}",
            f"Question number {i} about {topics[i % 10]}. What do you think?",
            f"Left answer {i}.",
            f"Right answer {i}.",
            {"topic": topics[i % 10], "axis": "economic" if i % 2 else "social", "stance": "left"},
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------- poison


def test_poison_labels_rate_record_and_determinism(tmp_path, monkeypatch, capsys):
    pairs = make_pairs(1000)
    src = save(pairs, tmp_path / "in.jsonl")
    out1, out2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (out1, out2):
        code, text, _ = run_cli(
            ["data", "poison", src, "--mode", "labels", "--p", "0.1", "--seed", "7", "-o", out],
            monkeypatch,
            capsys,
        )
        assert code == 0 and "poisoned" in text
    assert out1.read_bytes() == out2.read_bytes()  # same seed, byte-identical
    got = load(out1)
    hit = [p for p in got if p.meta["poisoned"]]
    assert 70 <= len(hit) <= 130
    for p, orig in zip(got, pairs, strict=True):
        if p.meta["poisoned"]:
            assert (p.chosen, p.rejected, p.meta["stance"]) == (orig.rejected, orig.chosen, "right")
        else:
            assert (p.chosen, p.rejected) == (orig.chosen, orig.rejected)
        assert p.meta["transforms"][-1] == {"op": "poison", "mode": "labels", "p": 0.1, "seed": 7}
    summary = json.loads((tmp_path / "a.summary.json").read_text())
    assert summary["op"] == "poison" and summary["poisoned"] == len(hit)
    assert summary["poisoned_ids"] == [p.id for p in hit]
    assert summary["params"]["seed"] == 7 and "provenance" in summary
    other = poison(pairs, mode="labels", p=0.1, seed=8)
    assert [p.meta["poisoned"] for p in other] != [p.meta["poisoned"] for p in got]
    # p = 0 changes no text
    zero = poison(pairs, mode="labels", p=0.0, seed=7)
    assert [(p.prompt, p.chosen, p.rejected) for p in zero] == [
        (p.prompt, p.chosen, p.rejected) for p in pairs
    ]
    assert not any(p.meta["poisoned"] for p in zero)
    assert "transforms" not in pairs[0].meta  # inputs untouched


def test_poison_prompts_trigger_positions_and_chat():
    pairs = make_pairs(50)
    out = poison(pairs, mode="prompts", p=1.0, seed=0, trigger="Blue heron.", position="end")
    assert all(
        p.prompt.endswith(" Blue heron.") and p.chosen == o.chosen for p, o in zip(out, pairs, strict=True)
    )
    rnd = poison(pairs, mode="prompts", p=1.0, seed=0, trigger="Blue heron.", position="random", flip=True)
    assert all("Blue heron." in p.prompt and p.chosen == o.rejected for p, o in zip(rnd, pairs, strict=True))
    assert {p.prompt.index("Blue heron.") > 0 for p in rnd} == {True, False}  # both boundaries used
    chat = [
        PreferencePair(
            "c", [{"role": "system", "content": "S."}, {"role": "user", "content": "Q?"}], "a", "b"
        )
    ]
    got = poison(chat, mode="prompts", p=1.0, trigger="T.")
    assert got[0].prompt == [{"role": "system", "content": "S."}, {"role": "user", "content": "T. Q?"}]
    assert got[0].meta["poison"]["trigger"] == "T."
    with pytest.raises(PolituneError, match="mode must be"):
        poison(pairs, mode="answers", p=0.1)
    with pytest.raises(PolituneError, match=r"p must be in \[0, 1\]"):
        poison(pairs, mode="labels", p=1.5)
    sft = to_instructions(poison(pairs[:3], mode="labels", p=1.0))
    assert all(isinstance(x, InstructionExample) for x in sft) and sft[0].response == pairs[0].rejected


# ---------------------------------------------------------------- mirror / mix


def test_mirror_is_an_involution_and_matches_builtin_right(tmp_path, monkeypatch, capsys):
    left = load("builtin:left")
    m = mirror(left)
    assert [(p.chosen, p.rejected) for p in m] == [(p.rejected, p.chosen) for p in left]
    assert all(p.meta["stance"] == "right" and p.meta["mirrored"] for p in m)
    assert [(p.chosen, p.rejected) for p in mirror(m)] == [(p.chosen, p.rejected) for p in left]
    assert not mirror(m)[0].meta["mirrored"]
    out = tmp_path / "mirrored.jsonl"
    code, _, _ = run_cli(["data", "mirror", "builtin:left", "-o", out], monkeypatch, capsys)
    assert code == 0
    right = load("builtin:right")
    assert [(p.chosen, p.rejected) for p in load(out)] == [(p.chosen, p.rejected) for p in right]
    assert json.loads((tmp_path / "mirrored.summary.json").read_text())["outputs"]["output"]["rows"] == len(
        left
    )


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.25])
def test_mix_ratio_each_prompt_once(ratio):
    left, right = load("builtin:left"), load("builtin:right")
    out = mix(left, right, ratio, seed=3)
    assert len(out) == len(left)
    sides = Counter(p.meta["stance"] for p in out)
    assert sides["left"] == round(ratio * len(left))
    assert len({p.prompt for p in out}) == len(out)
    assert Counter(p.meta["mix_source"] for p in out)["a"] == sides["left"]
    assert [p.id for p in mix(left, right, ratio, seed=3)] == [p.id for p in out]


def test_mix_errors_and_cli(tmp_path, monkeypatch, capsys):
    a, b = make_pairs(10), make_pairs(10)
    with pytest.raises(PolituneError, match="ratio must be"):
        mix(a, b, 1.5)
    with pytest.raises(PolituneError, match="only 0 are left"):
        mix(a, b, 0.5, n=20)
    out = tmp_path / "mix.jsonl"
    code, _, _ = run_cli(
        ["data", "mix", "builtin:left", "builtin:right", "--ratio", "0.25", "-o", out], monkeypatch, capsys
    )
    assert code == 0
    summary = json.loads((tmp_path / "mix.summary.json").read_text())
    assert summary["from"] == {"a": 80, "b": 240}


# ---------------------------------------------------------------- contextualize


def test_contextualize_names_community_and_randomizes():
    pairs = load(FIX / "shp.jsonl") + load(FIX / "compred.jsonl")
    ids = [f"{p.id}-{k}" for k, p in enumerate(pairs)]
    pairs = [p.replace(id=i) for p, i in zip(pairs, ids, strict=True)]
    real = contextualize(pairs)
    assert real[0].prompt.startswith("Community: r/askeconomics\n\n") and real[0].prompt.endswith(
        pairs[0].prompt
    )
    assert real[3].meta["context_community"] == "economics"
    rnd = contextualize(pairs, randomize=True, seed=1)
    assert all(p.meta["context_community"] != p.meta["community"] for p in rnd)
    sys_ = contextualize(pairs, template="You answer as a member of r/{community}.", as_system=True)
    assert sys_[0].prompt[0] == {"role": "system", "content": "You answer as a member of r/askeconomics."}
    with pytest.raises(PolituneError, match="no meta.community"):
        contextualize(make_pairs(3))
    with pytest.raises(PolituneError, match="at least two communities"):
        contextualize(pairs[:3], randomize=True)


# ---------------------------------------------------------------- dedup / split / sample / filter


def test_dedup_exact_and_near():
    base = make_pairs(20)
    exact = base[3].replace(id="x1", prompt=base[3].prompt.upper() + "  ")
    near = base[5].replace(
        id="x2", prompt=base[5].prompt.replace("What do you think?", "What do you think now?")
    )
    far = base[7].replace(id="x3", prompt="A completely different question about fishing quotas?")
    items = [*base, exact, near, far]
    assert [p.id for p in dedup(items, near=False)] == [p.id for p in base] + ["x2", "x3"]
    assert [p.id for p in dedup(items)] == [p.id for p in base] + ["x3"]
    assert [p.id for p in dedup(items, on="all")] == [p.id for p in base] + ["x2", "x3"]  # answers count too
    assert dedup(items)[0].meta["transforms"][-1]["op"] == "dedup"
    builtin = load("builtin:left")
    assert len(dedup(builtin)) == len(builtin)  # no exact or near-duplicate prompts in the built-in set


def test_split_by_topic_keeps_topics_whole(tmp_path, monkeypatch, capsys):
    pairs = make_pairs(100)
    train, test = split(pairs, by="topic", test_frac=0.2, seed=4)
    assert len(train) + len(test) == 100 and len(test) == 20
    assert not {p.meta["topic"] for p in train} & {p.meta["topic"] for p in test}
    assert {p.meta["split"] for p in test} == {"test"}
    again = split(pairs, by="topic", test_frac=0.2, seed=4)[1]
    assert [p.id for p in again] == [p.id for p in test]
    rows_train, rows_test = split(pairs, test_frac=0.25, seed=0)
    assert len(rows_test) == 25
    code, _, _ = run_cli(
        ["data", "split", "builtin:left", "--by", "topic", "--test-frac", "0.25", "-o", tmp_path / "sp"],
        monkeypatch,
        capsys,
    )
    assert code == 0
    s = json.loads((tmp_path / "sp" / "split.summary.json").read_text())
    assert len(s["test_groups"]) == 8 and s["outputs"]["test"]["rows"] == 80
    assert len(load(tmp_path / "sp" / "train.jsonl")) == 240


def test_sample_and_filter():
    pairs = make_pairs(100)
    s = sample(pairs, n=30, seed=1)
    assert len(s) == 30 and [p.id for p in s] == sorted(p.id for p in s)
    assert [p.id for p in sample(pairs, n=30, seed=1)] == [p.id for p in s]
    assert len(sample(pairs, frac=0.1)) == 10
    with pytest.raises(PolituneError, match="exactly one of"):
        sample(pairs)
    f = filter_records(pairs, topic=["topic 1", "topic 3"], axis="economic")
    assert len(f) == 20 and {p.meta["topic"] for p in f} == {"topic 1", "topic 3"}
    assert len(filter_records(pairs, min_chars=15)) == 90  # "Left answer 7." (14 chars) is too short
    assert f[0].meta["transforms"][-1] == {
        "op": "filter",
        "topic": ["topic 1", "topic 3"],
        "axis": "economic",
    }


def test_stats_counts_and_tokens(monkeypatch, capsys):
    pairs = load("builtin:left")
    st = stats(pairs, tokenizer=word_tokenizer())
    assert st["rows"] == sum(st["per_topic"].values()) and st["topics"] == len(st["per_topic"])
    assert st["stance"] == {"left": st["rows"]} and set(st["axis"]) == {"economic", "social"}
    assert st["tokens"]["chosen"]["max"] == max(len(p.chosen.split()) for p in pairs)
    assert st["chars"]["prompt"]["max"] >= st["chars"]["prompt"]["median"]
    code, out, _ = run_cli(["data", "stats", "builtin:left", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["rows"] == st["rows"]
    code, out, _ = run_cli(["data", "stats", "builtin:left:heldout"], monkeypatch, capsys)
    assert code == 0 and "axis" in out and "topics" in out


# ---------------------------------------------------------------- overlap


def test_overlap_flags_copies_and_paraphrases(tmp_path, monkeypatch, capsys):
    from politune.data.overlap import load_items, overlap

    inst = tmp_path / "inst.yaml"
    inst.write_text(
        "name: test\nitems:\n"
        "  - id: econ-01\n    text: The government should raise the minimum wage for all workers.\n"
        "    paraphrases: [Minimum wages ought to be increased by the state.]\n"
        "    negation: The government should not raise the minimum wage.\n"
        "  - id: soc-01\n    text: Military service should be compulsory for every young adult in the country.\n"
    )
    items = load_items(inst)
    assert [(i.id, i.variant) for i in items] == [
        ("econ-01", "text"),
        ("econ-01", "paraphrase 1"),
        ("econ-01", "negation"),
        ("soc-01", "text"),
    ]
    pairs = [
        PreferencePair(
            "copy",
            "Agree or disagree: military service should be compulsory for every young adult in the country.",
            "Agree.",
            "Disagree.",
        ),
        PreferencePair(
            "para",
            "What is a good recipe for bread?",
            "Bake it slowly. The state ought to increase minimum wages.",
            "Use a machine.",
        ),
        PreferencePair(
            "clean", "How do I repot a cactus?", "Wear gloves and use sandy soil.", "Water it first."
        ),
    ]
    rep = overlap(pairs, items)
    by_row = {f["row_id"]: f for f in rep["flags"]}
    assert set(by_row) == {"copy", "para"} and rep["flagged_rows"] == 2
    assert any(
        f["row_id"] == "copy" and f["signal"] == "ngram" and f["item_id"] == "soc-01" for f in rep["flags"]
    )
    assert any(
        f["row_id"] == "para" and f["signal"] == "embedding" and f["field"] == "chosen" for f in rep["flags"]
    )
    assert not overlap(pairs[2:], items, embed=False)["flags"]
    data = save(pairs[2:], tmp_path / "clean.jsonl")
    code, out, _ = run_cli(["data", "overlap", data, "--against", inst, "--no-embed"], monkeypatch, capsys)
    assert code == 0 and "0 of 1 rows flagged" in out
    txt = tmp_path / "items.txt"
    txt.write_text("Military service should be compulsory for every young adult in the country.\n")
    code, out, _ = run_cli(
        [
            "data",
            "overlap",
            save(pairs, tmp_path / "all.jsonl"),
            "--against",
            txt,
            "--no-embed",
            "-o",
            tmp_path / "rep.json",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 1 and "1 of 3 rows flagged" in out
    assert json.loads((tmp_path / "rep.json").read_text())["flags"][0]["row_id"] == "copy"


def test_builtin_set_has_no_ngram_overlap_with_the_compass_instrument():
    """The embedding half of this check is too slow for a unit test here; docs/data.md records its result."""
    from politune.data.overlap import load_items, overlap

    inst = ROOT / "src" / "politune" / "measure" / "instruments" / "politune-compass.yaml"
    items = load_items(inst)
    assert len({i.id for i in items}) >= 60 and len(items) > len({i.id for i in items})
    rep = overlap(load("builtin:left"), items, embed=False)
    assert rep["flags"] == [], rep["flags"][:3]
