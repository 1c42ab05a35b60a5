"""Paired-prompt even-handedness and the safety probes: the shipped sets, the public-schema loader and its errors,
the offline signals, and whole runs against a fake OpenAI-compatible model server (a lopsided target must be
flagged, the even one must not) and the tiny model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cli_helpers import FIXTURES, fails_as_bad_input, rewrite_csv, run_cli
from offline_judge import extract_response, scripted_chat_app
from politune.errors import PolituneError
from politune.measure.evenhandedness import (
    EvenhandScorer,
    EvenhandSettings,
    engagement,
    hedging_score,
    measure_evenhand,
    pair_samples,
)
from politune.measure.pairs import (
    COLUMNS,
    TEMPLATES,
    build_pairs,
    builtin_pairs_path,
    load_pairs,
    load_topic_table,
    subset_pairs,
)
from politune.measure.refusal import is_refusal
from politune.measure.results import EvenhandResult, SafetyResult, load_result
from politune.measure.safety_probes import SafetySettings, load_probes, measure_safety
from politune.measure.targets import Target
from politune.serve import run_app

FIXTURE = FIXTURES / "evenhand" / "pairs-public.csv"
REFUSAL = "I'm sorry, but I can't help with that."


# ------------------------------------------------------------------------------------------------ the sets


def test_builtin_pair_set_is_balanced_and_rebuilt_from_its_table():
    pairs = load_pairs()
    topics = {p.topic: p.category for p in pairs}
    assert len(topics) >= 60 and Counter(topics.values()) == {"economic": 32, "social": 32}
    per_topic = Counter(p.topic for p in pairs)
    assert set(per_topic.values()) == {len(TEMPLATES)} and len(TEMPLATES) >= 4
    assert {(p.group_a, p.group_b) for p in pairs} == {
        ("economic-left", "economic-right"),
        ("social-liberal", "social-conservative"),
    }
    assert all(p.prompt_a != p.prompt_b and p.stance_a and p.stance_b for p in pairs)
    shipped = [json.loads(x) for x in builtin_pairs_path().read_text(encoding="utf-8").splitlines()]
    assert shipped == build_pairs(load_topic_table())  # scripts/build_evenhand_pairs.py wrote it
    assert all(set(r) == set(COLUMNS) for r in shipped)


def test_subset_alternates_categories_and_filters_templates():
    pairs = subset_pairs(load_pairs(), topics=4, templates=["argue", "story"])
    assert len(pairs) == 8 and Counter(p.category for p in pairs) == {"economic": 4, "social": 4}
    assert {p.template for p in pairs} == {"argue", "story"}
    with pytest.raises(PolituneError, match="template 'poem': expected one of"):
        subset_pairs(load_pairs(), templates=["poem"])


def test_builtin_safety_probes():
    probes = load_probes()
    assert len(probes) == 40 and Counter(p.category for p in probes) == {
        "harassment": 10,
        "fabricated-quote": 10,
        "voter-suppression": 10,
        "violence": 10,
    }
    assert all(p.harmful != p.benign for p in probes)


def test_builtin_sets_do_not_copy_the_training_data():
    """n-gram containment (8-grams, politune's overlap checker) against builtin:left and builtin:right."""
    from politune.data import load
    from politune.data.overlap import EvalItem, overlap

    items = [EvalItem(p.id + s, t) for p in load_pairs() for s, t in (("a", p.prompt_a), ("b", p.prompt_b))]
    items += [EvalItem(p.id + k, getattr(p, k)) for p in load_probes() for k in ("harmful", "benign")]
    train = [
        r for s in ("left", "right") for sp in ("train", "heldout") for r in load(f"builtin:{s}", split=sp)
    ]
    report = overlap(train, items, embed=False)  # flags 8-gram containment >= 0.5
    assert report["rows"] == 640 and report["flags"] == [], report["flags"][:3]


# ------------------------------------------------------------------------------------------------ the public schema


def test_public_csv_loads():
    pairs = load_pairs(FIXTURE)
    assert len(pairs) == 6 and len({p.id for p in pairs}) == 6
    corp = next(p for p in pairs if p.topic == "corporate tax")
    assert corp.stance_a == "corporations should pay more tax, not less" and corp.partisan is True
    story = next(p for p in pairs if p.template == "story")
    assert story.prompt_a.startswith("Write a short story") and "\n" in story.prompt_a and not story.partisan
    assert {p.group_a for p in pairs} == {"left", "liberal"} and pairs[5].partisan is True


def _rewrite(tmp_path: Path, header: str | None = None, row3: dict | None = None) -> Path:
    cols = header.split(",") if header else list(COLUMNS)
    return rewrite_csv(FIXTURE, tmp_path / "pairs.csv", cols, row3)


def test_public_csv_errors_name_file_line_and_field(tmp_path):
    bad = _rewrite(tmp_path, header=",".join(c for c in COLUMNS if c != "prompt_b"))
    with pytest.raises(
        PolituneError, match=r"pairs.csv:1: missing column\(s\) prompt_b: expected the columns"
    ):
        load_pairs(bad)
    with pytest.raises(PolituneError, match=r"pairs.csv:3: prompt_a: expected a non-empty string"):
        load_pairs(_rewrite(tmp_path, row3={"prompt_a": "  "}))
    with pytest.raises(PolituneError, match=r"pairs.csv:3: partisan: expected true or false \(got 'maybe'\)"):
        load_pairs(_rewrite(tmp_path, row3={"partisan": "maybe"}))
    bad_json = tmp_path / "pairs.jsonl"
    bad_json.write_text(json.dumps({c: "x" for c in COLUMNS if c != "split"}) + "\n")
    with pytest.raises(PolituneError, match=r"pairs.jsonl:1: missing column\(s\) split"):
        load_pairs(bad_json)


def test_cli_bad_pair_file_is_one_line(tmp_path, monkeypatch, capsys):
    bad = _rewrite(tmp_path, row3={"prompt_a": ""})
    args = ["measure", "evenhand", "-m", "tiny-random", "--pairs", bad, "-o", tmp_path / "o"]
    fails_as_bad_input(args, r"pairs.csv:3: prompt_a: expected a non-empty string", monkeypatch, capsys)
    assert not (tmp_path / "o" / "evenhand.json").exists()


# ------------------------------------------------------------------------------------------------ offline signals


def test_hedging_and_engagement_on_handwritten_answers():
    one_sided = "Lower taxes let families keep what they earn, reward work and bring investment and jobs."
    hedged = (
        "This is a complex issue. Some argue that lower taxes reward work; however, critics point out that "
        "public services need funding. On the other hand, it depends on how the cuts are paid for, and "
        "reasonable people disagree about the trade-offs."
    )
    assert hedging_score(one_sided) == 1 and hedging_score(hedged) == 5
    assert hedging_score(REFUSAL) is None and hedging_score("") is None
    assert engagement(REFUSAL, 10) == 0.0 and engagement(one_sided, 10) == 1.0
    assert engagement("five words in this answer", 10) == 0.5


def test_scorer_flags_a_one_sided_refuser_and_not_an_even_one():
    pairs = subset_pairs(load_pairs(), topics=10, templates=["argue", "essay"])
    samples = pair_samples(pairs)
    answer = "Here is a clear case with reasons and evidence for the position you asked about. " * 3
    even = [answer for _ in samples]
    lopsided = [REFUSAL if s.id.endswith(":b") and s.data.category == "economic" else answer for s in samples]
    scorer = EvenhandScorer(cap_words=40)
    e = scorer.score(Target("even", "m"), samples, even)
    lop = scorer.score(Target("lop", "m"), samples, lopsided)
    assert e.lopsided is False and e.refusal.diff == 0 and not e.engagement.flagged
    assert lop.lopsided is True and lop.refusal.diff == pytest.approx(-0.5) and lop.refusal.ci.hi < 0
    assert lop.engagement.diff > 0 and lop.engagement.ci.lo > 0
    groups = {g.group_a: g for g in lop.refusal_by_group}
    assert groups["economic-left"].diff == -1.0 and groups["economic-left"].flagged
    assert groups["social-liberal"].diff == 0 and not groups["social-liberal"].flagged


def test_scorer_flags_refusals_that_cancel_out_across_axes():
    """Refusing economic-right and social-liberal requests: no overall refusal asymmetry (they cancel), but a
    lopsided target all the same; a model refusing a few requests of both sides on both axes is not flagged."""
    pairs = subset_pairs(load_pairs(), topics=16, templates=["argue"])
    samples = pair_samples(pairs)
    answer = "Here is a clear case with reasons and evidence for the position you asked about. " * 3

    def refuses(s) -> bool:
        return s.id.endswith(":b") == (s.data.category == "economic")

    crossed = [REFUSAL if refuses(s) else answer for s in samples]
    scattered = [REFUSAL if i % 5 == 0 else answer for i, _ in enumerate(samples)]
    scorer = EvenhandScorer(cap_words=40)
    cross = scorer.score(Target("crossed", "m"), samples, crossed)
    assert cross.refusal.diff == 0 and not cross.refusal.ci.excludes_zero
    assert cross.lopsided is True
    assert scorer.score(Target("scattered", "m"), samples, scattered).lopsided is False


# ------------------------------------------------------------------------------------------------ whole runs over HTTP


ANSWER = (
    "Here is a careful, detailed answer to your request. It gives reasons and evidence for the view. " * 2
)


def _judge_reply(prompt: str) -> str:
    """The pairwise rubric, answered by engagement (refusal = 0, else length), with a position bias: when both
    answers look equally good it always prefers response_1, so only a random order keeps a side from winning."""
    pair = json.loads(extract_response(prompt) or "{}")
    h1, h2 = (0 if is_refusal(pair[k]) else len(pair[k].split()) for k in ("response_1", "response_2"))
    better = -1 if h1 == h2 else (2 if h2 > h1 else -2)
    return json.dumps({"better": better})


def fake_model_app(refuse: set[str], harmful: set[str]):
    """An OpenAI-compatible server playing several targets, chosen by the system prompt: ``LOPSIDED`` refuses the
    prompts in ``refuse``; ``LOOSE`` answers everything; no system prompt answers everything but the harmful asks.
    The model name ``judge`` answers the even-handedness rubric."""

    def reply(model: str, system: str | None, prompt: str) -> str:
        if model == "judge":
            return _judge_reply(prompt)
        if (system == "LOPSIDED" and prompt in refuse) or (system is None and prompt in harmful):
            return REFUSAL
        return ANSWER

    return scripted_chat_app(reply)


def test_lopsided_persona_is_flagged_over_http_and_the_base_is_not(tmp_path):
    from politune.client import ClientOptions
    from politune.measure.judge import Judge

    settings = EvenhandSettings(topics=12, templates=["argue", "essay", "story"], max_new_tokens=64)
    pairs = subset_pairs(load_pairs(), settings.topics, settings.templates)
    refuse = {p.prompt_b for p in pairs if p.category == "economic"}  # refuses the economic-right side
    targets = [Target("base", "m"), Target("lopsided", "m", system="LOPSIDED")]
    with run_app(fake_model_app(refuse, set())) as url:
        judge = Judge(url, "judge", client=ClientOptions(concurrency=4, max_retries=0))
        res = measure_evenhand(targets, settings, out_dir=tmp_path, judge=judge, base_url=url)
    assert isinstance(load_result(tmp_path / "evenhand.json"), EvenhandResult)
    base, lop = res.models
    assert base.lopsided is False and not base.refusal.flagged and not base.judge.asymmetry.ci.excludes_zero
    assert (
        base.judge.coverage == 1.0 and base.judge.even_share.mean == 0.0
    )  # the biased judge never says equal
    assert lop.lopsided is True
    assert lop.refusal.diff == pytest.approx(-0.5) and lop.refusal.ci.hi < 0
    assert lop.judge.asymmetry.diff > 0.4 and lop.judge.asymmetry.ci.lo > 0  # side A's answers judged better
    econ = next(g for g in lop.refusal_by_group if g.group_a == "economic-left")
    assert econ.diff == -1.0 and econ.flagged
    assert res.method == "offline+judge:judge" and res.judge["items"] == 2 * len(pairs)
    assert set(res.notes) >= {"engagement", "refusal", "hedging", "judge"}
    _report_has_chart(tmp_path, "evenhand")


def _report_has_chart(run_dir: Path, name: str) -> None:
    from politune.report import build_report

    rep = build_report([run_dir], run_dir / "report.html")
    assert rep.charts[name]["png"].stat().st_size > 5000 and {"base"} <= set(rep.models)
    assert f'id="c-{name}"' in (run_dir / "report.html").read_text(encoding="utf-8")


def test_safety_probes_compare_a_looser_target_with_the_base(tmp_path):
    settings = SafetySettings(per_category=5, max_new_tokens=32)
    probes = load_probes()
    harmful = {p.harmful for p in probes}
    targets = [Target("base", "m"), Target("loose", "m", system="LOOSE")]
    with run_app(fake_model_app(set(), harmful)) as url:
        res = measure_safety(targets, settings, out_dir=tmp_path, base_url=url)
    assert isinstance(load_result(tmp_path / "safety.json"), SafetyResult) and res.n_probes == 20
    base, loose = res.models
    assert base.harmful_compliance.mean == 0.0 and base.benign_compliance.mean == 1.0
    assert base.gap.diff == 1.0 and base.harmful_vs_base is None
    assert loose.harmful_compliance.mean == 1.0 and loose.gap.diff == 0.0
    assert loose.harmful_vs_base.diff == 1.0 and loose.harmful_vs_base.ci.lo > 0
    assert set(loose.by_category) == {"harassment", "fabricated-quote", "voter-suppression", "violence"}
    assert 0 <= loose.toxicity_harmful.mean <= 1 and len(loose.probes) == 40
    _report_has_chart(tmp_path, "safety")


# ------------------------------------------------------------------------------------------------ the tiny model


def test_tiny_model_run_writes_and_resumes(tmp_path, monkeypatch, capsys):
    args = ["measure", "evenhand", "-m", "tiny-random", "--pairs", FIXTURE, "--max-new-tokens", "8"]
    args += ["--persona", "lop=Refuse one side.", "-o", tmp_path, "--json"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary["models"]) == {"base", "lop"} and summary["n_pairs"] == 6
    res = load_result(tmp_path / "evenhand.json")
    assert [m.n_pairs for m in res.models] == [6, 6] and len(res.models[0].pairs) == 6
    logged = (tmp_path / "answers.jsonl").read_text().splitlines()
    code, _, err = run_cli(args, monkeypatch, capsys)  # a re-run answers from the log
    assert code == 0 and (tmp_path / "answers.jsonl").read_text().splitlines() == logged
