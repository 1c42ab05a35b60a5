"""Side-effect measures (topics, quality, toxicity, refusal) end to end on the tiny model, plus their parts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from politune.errors import PolituneError
from politune.measure.effects import MEASURES, EffectsSettings, measure_effects
from politune.measure.quality import load_eli5, load_qa, neutral_passages, perplexities, rouge_l
from politune.measure.refusal import refusal_entry
from politune.measure.targets import Target
from politune.measure.topics import load_topic_questions
from politune.measure.toxicity import HFClassifier, ProfanityCheck, load_classifier, toxicity_entry

HELDOUT = {
    "universal basic income",
    "inheritance tax",
    "public pensions",
    "banking and financial regulation",
    "the death penalty",
    "assisted dying",
    "military conscription",
    "sex education in schools",
}


def test_builtin_question_sets():
    qs = load_topic_questions()
    assert len(qs) >= 24 and {q.topic for q in qs} == HELDOUT
    assert {q.axis for q in qs} == {"economic", "social"} and len({q.id for q in qs}) == len(qs)
    qa = load_qa()
    assert len(qa) >= 50 and all(q.reference and q.question for q in qa)
    passages = neutral_passages()
    assert len(passages) >= 10 and all(len(p.split()) > 30 for p in passages)


def test_topic_questions_do_not_copy_training_prompts():
    import json

    from politune.data.builtin import builtin_path

    rows = [
        json.loads(line) for line in builtin_path().read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    prompts = {r["prompt"].strip().lower() for r in rows}
    assert not any(q.question.strip().lower() in prompts for q in load_topic_questions())


def test_rouge_l_and_perplexity_are_real(tiny_model):
    scores = rouge_l(
        ["The capital of France is Paris.", "Bananas are yellow.", ""],
        ["Paris is the capital of France.", "The capital of France is Paris.", "x"],
    )
    assert scores[0] > 0.5 and scores[1] < 0.3 and scores[2] == 0.0
    model, tok = tiny_model
    ppl = perplexities(model, tok, ["hello world " * 5, "The government should raise the minimum wage."])
    assert all(1.0 < p < 10_000 for p in ppl)
    # padding must not change a passage's perplexity
    alone = perplexities(model, tok, ["The government should raise the minimum wage."])
    assert alone[0] == pytest.approx(ppl[1], rel=1e-4)


def test_eli5_loader(tmp_path):
    f = tmp_path / "eli5.jsonl"
    rows = [
        {
            "q_id": "a1",
            "title": "Why is the sky blue?",
            "selftext": "",
            "answers": {
                "a_id": ["x", "y"],
                "text": ["Because of dust.", "Air scatters blue light more."],
                "score": [3, 12],
            },
        },
        {"q_id": "a2", "title": "How do magnets work?", "answers": {"text": [], "score": []}},
        {"q_id": "a3", "title": "Why do we yawn?", "answers": {"text": ["Nobody is sure."], "score": [1]}},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_eli5(f)
    assert [i.id for i in items] == ["a1", "a3"]
    assert (
        items[0].reference == "Air scatters blue light more." and items[0].question == "Why is the sky blue?"
    )
    assert [i.id for i in load_qa(f)] == ["a1", "a3"]  # detected by its answers field
    f.write_text(
        json.dumps(rows[0]) + "\n" + json.dumps({"q_id": "b", "title": "t", "answers": "oops"}) + "\n"
    )
    with pytest.raises(PolituneError, match=r"eli5.jsonl:2: answers"):
        load_eli5(f)
    own = tmp_path / "qa.jsonl"
    own.write_text('{"question": "Q1?", "reference": "A1."}\n{"question": "Q2?"}\n')
    with pytest.raises(PolituneError, match=r"qa.jsonl:2: reference"):
        load_qa(own)


def test_toxicity_classifiers(tmp_path):
    clf = load_classifier()
    assert isinstance(clf, ProfanityCheck) and clf.name == "alt-profanity-check"
    mild, rude = clf.score(
        ["Thank you, that was a helpful and kind answer.", "shut up you stupid idiot, fuck off"]
    )
    assert rude > 0.5 > mild
    entry = toxicity_entry([0.1, 0.9, 0.2, 0.7], threshold=0.5)
    assert entry["share_above"] == 0.5 and entry["mean"] == pytest.approx(0.475) and entry["n"] == 4
    with pytest.raises(PolituneError, match="expected 'alt-profanity-check'"):
        load_classifier("detoxify")


def test_hf_toxicity_classifier_from_a_local_folder(tmp_path):
    """A local sequence classifier (tiny random weights here; a real user points at roberta-hate-speech)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from politune.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=2,
        id2label={0: "nothate", 1: "hate"},
        label2id={"nothate": 0, "hate": 1},
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "clf", safe_serialization=True)
    tok.save_pretrained(tmp_path / "clf")
    clf = load_classifier(f"hf:{tmp_path / 'clf'}")
    assert isinstance(clf, HFClassifier) and clf.label_index == 1  # "nothate" is not the toxic label
    scores = clf.score(["a kind sentence", "another one", "three"])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert HFClassifier(tmp_path / "clf", toxic_label="nothate").label_index == 0
    with pytest.raises(PolituneError, match="no label 'toxic'"):
        HFClassifier(tmp_path / "clf", toxic_label="toxic")
    with pytest.raises(PolituneError, match="config.json"):
        load_classifier(f"hf:{tmp_path / 'missing'}")


def test_refusal_entry_combines_keywords_and_judge():
    e = refusal_entry([True, False, False, False], [True, True, None, False])
    assert e["rate"] == 0.5 and e["keyword_rate"] == 0.25 and e["n"] == 4
    assert e["judge_rate"] == pytest.approx(2 / 3) and e["judge_coverage"] == 0.75
    assert refusal_entry([False, True])["rate"] == 0.5


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    from politune.models.tiny import build_tiny_model

    model, _ = build_tiny_model(seed=0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    path = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(path, safe_serialization=True)
    return path


def _questions(tmp_path):
    f = tmp_path / "topics.jsonl"
    f.write_text(
        '{"id": "e1", "topic": "pensions", "axis": "economic", "question": "Who should pay for pensions?"}\n'
        '{"id": "s1", "topic": "conscription", "axis": "social", "question": "Should service be compulsory?"}\n'
    )
    return f


class KeywordScorer:
    """A deterministic stand-in stance scorer for the plumbing test (the offline scorer is tested on its own)."""

    name = "keyword-test"
    precision = "float32"  # recorded in topics.json as scorer_precision

    def lean(self, texts, axis, prompts=None):
        return [None if not t else (len(t) % 7 - 3) / 3 for t in texts]


def test_measure_effects_writes_every_result_file_and_resumes(tmp_path, tiny_adapter):
    targets = [
        Target("base", "tiny-random"),
        Target("left", "tiny-random", str(tiny_adapter)),
        Target("persona", "tiny-random", None, "You are a careful assistant."),
    ]
    settings = EffectsSettings(
        topics_file=str(_questions(tmp_path)),
        qa_limit=3,
        max_new_tokens=12,
        qa_max_new_tokens=8,
        batch_size=4,
    )
    out = tmp_path / "run"
    generated = []

    def measure(which=targets, measures=MEASURES):  # records (target, n) as answers are generated
        return measure_effects(
            which,
            measures,
            out,
            KeywordScorer(),
            settings=settings,
            on_progress=lambda *x: generated.append(x),
        )

    typed = measure()
    assert sum(n for _, n in generated) == 3 * (2 + 3)  # each answer generated once, shared by the four tasks
    assert typed["quality"].models[0].delta_vs_base is None and typed["refusal"].models[0].n == 2
    res = {k: v.to_json() for k, v in typed.items()}
    for kind in ("topics", "quality", "toxicity", "refusal"):
        data = json.loads((out / f"{kind}.json").read_text())
        assert data["kind"] == kind and data["provenance"]["politune"]
        assert [m["target"]["name"] for m in data["models"]] == ["base", "left", "persona"]
        assert data["models"][1]["target"]["adapter_hash"]
    topics = res["topics"]
    assert topics["scorer"] == "keyword-test" and topics["scorer_precision"] == "float32"
    m0 = topics["models"][0]
    assert set(m0) >= {"target", "axis_means", "mean", "ci", "questions"}
    assert [q["id"] for q in m0["questions"]] == ["e1", "s1"]
    quality = res["quality"]["models"]
    assert quality[0]["delta_vs_base"] is None
    assert set(quality[1]["delta_vs_base"]) == {"rouge_l", "perplexity"}
    assert quality[1]["perplexity"]["mean"] != quality[0]["perplexity"]["mean"]  # the adapter is attached
    assert quality[2]["perplexity"]["mean"] == pytest.approx(
        quality[0]["perplexity"]["mean"]
    )  # detached again
    assert res["toxicity"]["models"][0]["n"] == 5 and res["toxicity"]["classifier"] == "alt-profanity-check"
    assert res["refusal"]["models"][0]["n"] == 2

    # a re-run (or a resumed run after kill -9) reuses the logged answers: nothing is generated again
    generated.clear()
    res2 = measure()
    assert generated == []
    assert res2["quality"].models[1].rouge_l == typed["quality"].models[1].rouge_l
    # a torn last line (crash mid-write) is skipped and that answer regenerated
    log = out / "answers.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    qa_line = next(i for i, line in enumerate(lines) if '"set": "qa"' in line)
    log.write_text("".join(lines[:qa_line]) + lines[qa_line][:20])
    generated.clear()
    measure(targets[:1], ("quality",))
    assert sum(n for _, n in generated) == 3


def test_bad_inputs_fail_before_generation(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "topic": "t", "axis": "cultural", "question": "q"}\n')
    with pytest.raises(PolituneError, match=r"bad.jsonl:1: axis"):
        measure_effects(
            [Target("base", "tiny-random")], ("topics",), settings=EffectsSettings(topics_file=str(bad))
        )
    with pytest.raises(PolituneError, match="unknown measure"):
        measure_effects([Target("base", "tiny-random")], ("vibes",))


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "politune",
            "measure",
            "topics",
            "--model",
            "tiny-random",
            "--topics",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "bad.jsonl:1: not valid JSON" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "topics.json").exists()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "politune",
            "measure",
            "all",
            "--model",
            "tiny-random",
            "--judge",
            "http://127.0.0.1:9/v1",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "no model name after /v1/" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_smollm2_quality_numbers_are_sane(smollm2_dir):
    """The real default model: fluent text has a low perplexity and a factual answer overlaps its reference."""
    from politune.models import generate, load_model

    model, tok = load_model(str(smollm2_dir))
    ppl = perplexities(model, tok, neutral_passages()[:3])
    assert all(2.0 < p < 60.0 for p in ppl)
    qa = load_qa()[:4]
    answers = generate(model, tok, [q.question for q in qa], max_new_tokens=40)
    scores = rouge_l(answers, [q.reference for q in qa])
    assert sum(scores) / len(scores) > 0.12  # 135M answers verbosely (~0.2 here); random text scores ~0
