"""data pillar: schema, loaders for the published schemas, built-in set, validation, malformed input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import FIXTURES, run_cli
from politune.data import (
    InstructionExample,
    LoadOptions,
    PreferencePair,
    load,
    load_report,
    read_table,
    save,
    to_dataset,
    validate,
)
from politune.errors import PolituneError

FIX = FIXTURES / "data"
BAD = FIX / "malformed"
HELDOUT_TOPICS = 8


def triples(items):
    """(user text, chosen, rejected) of each pair: what must agree across schemas."""
    out = []
    for p in items:
        text = p.prompt if isinstance(p.prompt, str) else p.prompt[-1]["content"]
        out.append((text, p.chosen, p.rejected))
    return out


def word_tokenizer():
    """A real Hugging Face fast tokenizer that splits on whitespace: one token per word, so counts are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


# ---------------------------------------------------------------- published schemas


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("politune.csv", {}),
        ("politune.parquet", {}),
        ("politune_bom.jsonl", {}),
        ("trl_conversational.jsonl", {}),
        ("mapped.csv", {"mapping": {"prompt": "question", "chosen": "good", "rejected": "bad"}}),
        ("shp.jsonl", {}),
        ("compred.jsonl", {}),
        ("webgpt.jsonl", {}),
    ],
)
def test_published_schemas_load_into_the_same_pairs(name, kwargs):
    base = load(FIX / "politune.jsonl")
    got = load(FIX / name, **kwargs)
    assert all(isinstance(p, PreferencePair) for p in got)
    assert triples(got) == triples(base)
    assert len({p.id for p in got}) == len(got)


def test_schema_specific_meta_and_filters():
    shp = load_report(FIX / "shp.jsonl")
    assert shp.schema == "shp" and shp.dropped == {"score_ratio": 1}
    assert {p.meta["community"] for p in shp.items} == {"askeconomics"}  # "_train" suffix stripped
    assert shp.items[1].meta["provenance"]["post_id"] == "post1"
    assert {p.meta["community"] for p in load(FIX / "compred.jsonl")} == {"economics"}
    assert len(load(FIX / "shp.jsonl", options=LoadOptions(min_score_ratio=None))) == 4

    web = load_report(FIX / "webgpt.jsonl")
    assert web.schema == "webgpt" and web.dropped == {"tie": 1}
    assert web.items[0].meta["quotes"]["chosen"]["title"] == ["source A"]
    assert web.items[2].meta["provenance"]["score_chosen"] == 1.0
    ties = load(FIX / "webgpt.jsonl", options=LoadOptions(keep_ties=True))
    assert len(ties) == 4 and ties[-1].meta["tie"] is True

    mapped = load(
        FIX / "mapped.csv",
        mapping={
            "prompt": "question",
            "chosen": "good",
            "rejected": "bad",
            "topic": "category",
            "system": "category",
        },
    )
    assert mapped[0].meta["topic"] == "housing"
    assert mapped[0].prompt[0] == {"role": "system", "content": "housing"}


def test_shp_caps_pairs_per_post_seeded(tmp_path):
    rows = [
        {
            "post_id": "p1" if i < 8 else "p2",
            "history": f"Question {i}?",
            "human_ref_A": f"answer A {i}",
            "human_ref_B": f"answer B {i}",
            "labels": i % 2,
            "score_ratio": 3.0,
            "c_root_id_A": f"a{i}",
            "c_root_id_B": f"b{i}",
            "domain": "askpolitics_train",
        }
        for i in range(10)
    ]
    f = tmp_path / "shp.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = load(f, options=LoadOptions(seed=1))
    assert len(a) == 5 + 2
    assert sum(p.meta["provenance"]["post_id"] == "p1" for p in a) == 5
    assert [p.id for p in a] == [p.id for p in load(f, options=LoadOptions(seed=1))]
    assert (
        len({frozenset(p.id for p in load(f, options=LoadOptions(seed=s))) for s in range(5)}) > 1
    )  # the seed picks the 5
    assert len(load(f, options=LoadOptions(max_pairs_per_post=None))) == 10
    for p in a:  # labels: 1 = A preferred, 0 = B preferred
        i = int(p.prompt.split()[1].rstrip("?"))
        assert p.chosen == f"answer {'A' if i % 2 else 'B'} {i}" and p.meta["community"] == "askpolitics"


# ---------------------------------------------------------------- round trips and sources


def test_save_load_round_trip_all_formats(tmp_path):
    items = [
        PreferencePair(
            "a",
            "Plain prompt?",
            "yes",
            "no",
            {"topic": "t", "stance": "left", "poisoned": False, "source": "test"},
        ),
        PreferencePair(
            "b",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Chat?"}],
            "sure",
            "nope",
            {"topic": "u", "provenance": {"line": 3}, "source": "test"},
        ),
    ]
    for sfx in (".jsonl", ".jsonl.gz", ".csv", ".parquet"):
        out = save(items, tmp_path / f"x{sfx}")
        back = load(out)
        assert [b.to_dict() for b in back] == [{**i.to_dict()} for i in items], sfx
    sft = [InstructionExample("s1", "Q?", "A.", {"stance": "right", "source": "test"})]
    assert load(save(sft, tmp_path / "s.jsonl")) == sft
    with pytest.raises(PolituneError, match="cannot write"):
        save(items, tmp_path / "x.xlsx")
    with pytest.raises(PolituneError, match="cannot write"):
        save(items, tmp_path / "x.jsonl" / "under-a-file.jsonl")
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_hf_source_goes_through_load_dataset(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    repo = tmp_path / "politune-left"
    repo.mkdir()
    (repo / "politune-left.csv").write_bytes((FIX / "politune.csv").read_bytes())
    got = load(f"hf:{repo}")
    assert triples(got) == triples(load(FIX / "politune.jsonl"))
    assert got[0].meta["source"] == f"hf:{repo}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolituneError, match="HF_HUB_OFFLINE"):
        load("hf:politune-test-owner/no-such-dataset")
    with pytest.raises(PolituneError, match="not a hub dataset id"):
        load("hf:not a/valid id!")


def test_save_to_disk_folder_and_table_folder(tmp_path):
    import datasets

    base = load(FIX / "politune.jsonl")
    rows = [p.to_dict() for p in base]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert triples(load(tmp_path / "ds")) == triples(base)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])}
    ).save_to_disk(str(tmp_path / "dd"))
    assert len(load(tmp_path / "dd")) == 3 and len(load(tmp_path / "dd", split="test")) == 1
    with pytest.raises(PolituneError, match="no split 'dev'"):
        load(tmp_path / "dd", split="dev")
    folder = tmp_path / "tables"
    folder.mkdir()
    save(base[:2], folder / "a.jsonl")
    save(base[2:], folder / "b.csv")
    (folder / "a.rejected.jsonl").write_text('{"junk": 1}\n')  # side files are not data
    assert triples(load(folder)) == triples(base)
    assert len(read_table(folder)) == 3
    assert read_table(FIX / "mapped.csv")[0]["category"] == "housing"


# ---------------------------------------------------------------- built-in set


def test_builtin_views_and_topic_split():
    left, right = load("builtin:left"), load("builtin:right")
    assert len(left) == len(right) > 0
    for a, b in zip(left, right, strict=True):
        assert (a.id, a.prompt, a.chosen, a.rejected) == (b.id, b.prompt, b.rejected, b.chosen)
        assert a.meta["stance"] == "left" and b.meta["stance"] == "right"
        assert a.meta["axis"] in ("economic", "social") and a.meta["topic"]
    sft = load("builtin:sft-right")
    assert all(isinstance(x, InstructionExample) for x in sft)
    assert [x.response for x in sft] == [p.chosen for p in right]
    train, held = load("builtin:left", split="train"), load("builtin:left:heldout")
    assert len(train) + len(held) == len(left)
    assert not {p.meta["topic"] for p in train} & {p.meta["topic"] for p in held}
    assert [p.id for p in load("builtin:left:train")] == [p.id for p in train]
    with pytest.raises(PolituneError, match="unknown built-in"):
        load("builtin:centre")
    with pytest.raises(PolituneError, match="unknown split"):
        load("builtin:left:test")


def test_builtin_meets_the_acceptance_bar():
    """>= 300 pairs over >= 30 topics, balanced axes, no duplicate prompts, 8 whole topics held out, valid."""
    from politune.data.stats import stats

    pairs = load("builtin:left")
    st = stats(pairs)
    assert st["rows"] >= 300 and st["topics"] >= 30
    assert abs(st["axis"]["economic"] - st["axis"]["social"]) <= 0.1 * st["rows"]
    assert st["duplicate_prompts"] == 0 and st["duplicate_ids"] == 0 and st["identical_answers"] == 0
    held_topics = {p.meta["topic"] for p in pairs if p.meta["split"] == "heldout"}
    assert len(held_topics) == HELDOUT_TOPICS
    assert len(set(st["form"])) == 5  # the five forms of ideology.jsonl (statements.jsonl adds a sixth)
    assert validate(pairs) == []


def test_builtin_statements_views_are_balanced_and_not_the_instrument():
    """The statement set: both sides' answers, keyed both ways on both axes, one writer held out, and no row
    flagged by the contamination check against the built-in compass instrument (its statements were also
    gated at MiniLM cosine < 0.75 when the set was built)."""
    from politune.data.builtin import builtin_path
    from politune.data.overlap import load_items, overlap
    from politune.measure.compass.instrument import builtin_path as instrument_path

    left, right = load("builtin:statements-left"), load("builtin:statements-right")
    assert len(left) == len(right) >= 400
    raw = [json.loads(x) for x in builtin_path("statements-left").read_text(encoding="utf-8").splitlines()]
    for a, b, r in zip(left, right, raw, strict=True):
        assert (a.chosen, a.rejected) == (b.rejected, b.chosen) == (r["left"], r["right"])
        assert a.meta["form"] == "statement" and r["statement"] in a.prompt
    for axis in ("economic", "social"):
        keys = [r["key"] for r in raw if r["axis"] == axis]
        assert abs(keys.count("left") - keys.count("right")) <= 0.05 * len(keys)
    held = load("builtin:statements-right:heldout")
    assert {r["writer"] for r in raw if r["split"] == "heldout"} >= {"w4"} and len(held) >= 100
    assert [x.response for x in load("builtin:sft-statements-right")] == [p.chosen for p in right]
    report = overlap(left, load_items(instrument_path()))
    assert report["flagged_rows"] == 0, report["flags"][:3]


# ---------------------------------------------------------------- training format


def test_to_dataset_is_trl_conversational():
    pairs = load(FIX / "politune.jsonl")
    pairs[0] = pairs[0].replace(
        prompt=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Q?"}]
    )
    ds = to_dataset(pairs)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds[0]["prompt"][0]["role"] == "system" and ds[0]["prompt"][-1] == {"role": "user", "content": "Q?"}
    assert ds[1]["prompt"] == [{"role": "user", "content": pairs[1].prompt}]
    assert ds[1]["chosen"] == [{"role": "assistant", "content": pairs[1].chosen}]
    assert set(to_dataset(pairs, with_meta=True).column_names) == {
        "prompt",
        "chosen",
        "rejected",
        "id",
        "meta",
    }
    sft = to_dataset(load("builtin:sft-left")[:4])
    assert sft.column_names == ["prompt", "completion"]
    assert sft[0]["completion"][0]["role"] == "assistant"
    plain = to_dataset(pairs[1:], conversational=False)
    assert plain[0]["prompt"] == pairs[1].prompt and plain[0]["chosen"] == pairs[1].chosen
    with pytest.raises(PolituneError, match="conversational"):
        to_dataset(pairs, conversational=False)


# ---------------------------------------------------------------- validation


def test_every_bad_row_reported_with_location(tmp_path):
    f = tmp_path / "mixed.jsonl"
    rows = [
        '{"id": "1", "prompt": "Fine?", "chosen": "a", "rejected": "b"}',
        '{"id": "2", "prompt": "", "chosen": "a", "rejected": "b"}',
        '{"id": "3", "prompt": "Same?", "chosen": "x", "rejected": "x"}',
        '{"id": "1", "prompt": "Dup id?", "chosen": "a", "rejected": "b"}',
        '{"id": "5", "prompt": "Cut',
        '{"id": "6", "prompt": ["not", "messages"], "chosen": "a", "rejected": "b"}',
        '{"id": "7", "prompt": "Fine too?", "chosen": "c", "rejected": "d"}',
    ]
    f.write_text("\n".join(rows) + "\n")
    rep = load_report(f)
    lines = [str(i) for i in rep.issues]
    assert lines == [
        f"{f}:2: prompt: empty",
        f"{f}:3: rejected: identical to chosen",
        f"{f}:4: id: duplicate id '1' (first at {f}:1)",
        f"{f}:5: json: invalid JSON (Unterminated string starting at, column 23)",
        f"{f}:6: prompt: message 0: expected {{'role': ..., 'content': ...}}, got string",
    ]
    assert [p.id for p in rep.items] == ["1", "7"]
    with pytest.raises(
        PolituneError, match=r"mixed.jsonl:2: prompt: empty \(\+4 more problems in 5 bad rows\)"
    ):
        load(f)
    assert [p.id for p in load(f, drop_invalid=True)] == ["1", "7"]
    # validate=False keeps only the structural checks
    assert len(load_report(f, validate=False).items) == 5


def test_validate_cli_drop_invalid_loses_nothing(tmp_path, monkeypatch, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"id": "1", "prompt": "Q?", "chosen": "a", "rejected": "b"}\n'
        '{"id": "2", "prompt": "Q2?", "chosen": "a", "rejected": "a"}\n'
        '{"id": "3", "prompt": "Q3?", "chosen": 5, "rejected": "b"}\n'
    )
    code, _, err = run_cli(["data", "validate", f], monkeypatch, capsys)
    assert code == 2
    assert (
        f"{f}:2: rejected: identical to chosen" in err
        and f"{f}:3: chosen: expected a string, got integer" in err
    )
    assert "2 problems in 2 of 3 rows" in err
    out = tmp_path / "good.jsonl"
    code, _, err = run_cli(["data", "validate", f, "--drop-invalid", "-o", out], monkeypatch, capsys)
    assert code == 0
    assert [p.id for p in load(out)] == ["1"]
    rejected = [json.loads(x) for x in (tmp_path / "good.rejected.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejected] == [f"{f}:2", f"{f}:3"]
    assert rejected[1]["row"]["chosen"] == 5 and rejected[1]["errors"] == [
        "chosen: expected a string, got integer"
    ]
    code, out_text, _ = run_cli(["data", "validate", FIX / "politune.jsonl"], monkeypatch, capsys)
    assert code == 0 and "3 valid preference rows" in out_text


def test_token_limit(tmp_path):
    tok = word_tokenizer()
    f = tmp_path / "t.jsonl"
    f.write_text(
        '{"id": "1", "prompt": "Q?", "chosen": "short", "rejected": "b"}\n'
        + json.dumps({"id": "2", "prompt": "Q?", "chosen": "long " * 200, "rejected": "b"})
        + "\n"
    )
    rep = load_report(f, options=LoadOptions(tokenizer=tok, max_tokens=50))
    assert [i.loc for i in rep.issues] == [f"{f}:2"] and rep.issues[0].field == "chosen"
    assert rep.issues[0].problem == "200 tokens, longer than the limit of 50 (max_tokens)"
    assert [p.id for p in rep.items] == ["1"]


# ---------------------------------------------------------------- malformed input


def test_malformed_folder_each_gets_a_one_line_error(tmp_path, monkeypatch, capsys):
    files = sorted(p for p in BAD.iterdir() if p.is_file())
    big = tmp_path / "ten_mb_line.jsonl"  # the plain 10 MB line, next to the committed gzipped one
    big.write_text(
        json.dumps({"id": "a", "prompt": "Q?", "chosen": "x" * 10_485_760, "rejected": "n"}) + "\n"
    )
    files.append(big)
    assert len(files) >= 20
    for f in files:
        code, out, err = run_cli(["data", "validate", f], monkeypatch, capsys)
        assert code == 2, (f.name, out, err)
        assert "Traceback" not in err + out
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: "), (f.name, err)
        assert f.name in lines[-1] and len(lines[-1]) < 400, (f.name, err)
        for ln in lines[:-1]:  # row problems: "file:line: field: problem"
            assert ln.startswith(f"{f}:") and ln.count(": ") >= 2, (f.name, ln)
        with pytest.raises(PolituneError):
            load(f)


def test_rows_without_columns_get_a_one_line_error(tmp_path):
    """Empty objects have no columns: a schema error, or the first unreadable row's, never a TypeError."""
    empty = tmp_path / "empty_objects.jsonl"
    empty.write_text("{}\n{}\n")
    with pytest.raises(PolituneError, match=r"cannot tell the schema from the columns \(none\)"):
        load(empty)
    mixed = tmp_path / "empty_then_bad.jsonl"
    mixed.write_text("{}\nnot json\n")
    with pytest.raises(PolituneError, match=rf"^{mixed}:2: json: invalid JSON .*; no readable rows$"):
        load(mixed)


def test_cli_subprocess_bad_file_no_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "POLITUNE_HOME": str(tmp_path)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "politune",
            "data",
            "load",
            str(BAD / "truncated.jsonl"),
            "-o",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {BAD / 'truncated.jsonl'}:2: json: invalid JSON")
    )
    assert not (tmp_path / "o.jsonl").exists()
