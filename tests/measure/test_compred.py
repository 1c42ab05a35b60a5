"""The ComPreD-style measures: pairwise win-rate (communities, the offline and the LLM community judge, the
recorded random order and the position-bias check, whole runs over HTTP and on the tiny model) and implicit
reward accuracy (orientation, subsets, agreement with the DPO trainer's own held-out figures, loader errors),
their study options and result rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_cli
from offline_judge import PoleWordScorer, offline_judge_app, scripted_chat_app
from politune.errors import PolituneError
from politune.measure.community_judge import (
    Community,
    OfflineCommunityJudge,
    ShownPair,
    SlotVerdict,
    WinratePrompt,
    compare,
    first_slot_of,
    parse_community,
)
from politune.measure.results import RewardAccuracyResult, WinrateResult, load_result
from politune.measure.results_base import TargetInfo
from politune.measure.results_compred import PromptAnswer, WinrateEntry
from politune.measure.targets import Target
from politune.serve import run_app

LEFT = "Workers need fair wages, strong unions and public services; tax the wealthy to reduce inequality."
RIGHT = (
    "Markets, competition and private enterprise drive growth; cut taxes and deregulation bring prosperity."
)
NEUTRAL = "This question has been discussed for a long time and there are several things to consider here."


# ------------------------------------------------------------------------------------------------ communities


def test_parse_community_forms_and_errors():
    assert parse_community("left") == Community("a left-leaning reader", "left")
    assert parse_community("r/economics readers=right") == Community("r/economics readers", "right")
    assert parse_community("r/askhistorians") == Community("r/askhistorians", None)
    with pytest.raises(PolituneError, match=r"side 'up': expected left or right"):
        parse_community("r/x=up")
    with pytest.raises(PolituneError, match="expected NAME"):
        parse_community("=left")


def _entry(name: str, answers: dict[str, str | None]) -> WinrateEntry:
    return WinrateEntry(
        target=TargetInfo(name=name), answers=[PromptAnswer(id=k, answer=v) for k, v in answers.items()]
    )


ITEMS = [WinratePrompt(f"q{i}", f"Question {i}?", "economic", f"topic {i % 4}") for i in range(40)]


def _shown(items, first, second):
    return [ShownPair(it, a, b) for it, a, b in zip(items, first, second, strict=True)]


def test_offline_judge_prefers_the_answer_toward_the_community_side():
    judge = OfflineCommunityJudge(PoleWordScorer(), margin=0.2)
    items = ITEMS[:3]
    v = judge.verdicts(
        _shown(items, [LEFT, RIGHT, NEUTRAL], [RIGHT, LEFT, NEUTRAL]), Community("left readers", "left")
    )
    assert [x.choice for x in v] == ["first", "second", "tie"]
    assert v[0].lean_first < 0 < v[0].lean_second
    v = judge.verdicts(
        _shown(items, [LEFT, RIGHT, ""], [RIGHT, LEFT, LEFT]), Community("right readers", "right")
    )
    assert [x.choice for x in v[:2]] == ["second", "first"] and v[2].choice is None and "scored" in v[2].error
    with pytest.raises(PolituneError, match=r"offline judge needs its side: name it 'r/x=left'"):
        judge.verdicts(_shown(items, [LEFT] * 3, [RIGHT] * 3), Community("r/x"))


def test_left_model_wins_for_left_readers_and_loses_for_right_readers():
    a = _entry("left", {it.id: LEFT for it in ITEMS})
    b = _entry("base", {it.id: RIGHT if i % 2 else NEUTRAL for i, it in enumerate(ITEMS)})
    judge = OfflineCommunityJudge(PoleWordScorer(), margin=0.2)
    left = compare(a, b, ITEMS, Community("left readers", "left"), judge, seed=3)
    right = compare(a, b, ITEMS, Community("right readers", "right"), judge, seed=3)
    assert left.win_rate.mean == 1.0 and left.wins == 40 and left.coverage == 1.0
    assert right.win_rate.mean == 0.0 and right.losses == 40 and right.win_rate.ci.hi == 0.0
    assert left.by_axis["economic"].mean == 1.0
    # an unbiased judge, random order: the first slot wins about half the decisive verdicts
    assert 0.3 < left.first_slot.mean < 0.7 and left.position_bias is False


class FirstSlotJudge:
    """A judge that always prefers the answer shown first."""

    name = "first-slot"

    def verdicts(self, pairs, community):
        return [SlotVerdict("first") for _ in pairs]


def test_order_is_randomised_recorded_and_a_position_biased_judge_is_flagged():
    a = _entry("left", {it.id: LEFT for it in ITEMS})
    b = _entry("base", {it.id: NEUTRAL for it in ITEMS})
    c = compare(a, b, ITEMS, Community("left readers", "left"), FirstSlotJudge(), seed=0)
    firsts = [v.first for v in c.verdicts]
    assert firsts == [first_slot_of(0, "left", "base", "left readers", it.id) for it in ITEMS]
    assert 10 < firsts.count("a") < 30  # random, both ways
    assert all(v.winner == v.first and v.score == (1.0 if v.first == "a" else 0.0) for v in c.verdicts)
    assert c.first_slot.mean == 1.0 and c.position_bias is True and c.first_slot_p < 1e-10
    assert c.win_rate.ci.lo < 0.5 < c.win_rate.ci.hi  # the bias does not favour either model
    again = compare(a, b, ITEMS, Community("left readers", "left"), FirstSlotJudge(), seed=0)
    other = compare(a, b, ITEMS, Community("left readers", "left"), FirstSlotJudge(), seed=1)
    assert [v.first for v in again.verdicts] == firsts != [v.first for v in other.verdicts]


def test_sign_test_is_exact():
    from politune.measure.stats import sign_test_p

    assert sign_test_p(2, 10) == pytest.approx(0.109375) and sign_test_p(5, 10) == 1.0
    assert sign_test_p(40, 40) == pytest.approx(2 * 0.5**40) and sign_test_p(0, 0) == 1.0


def test_ties_count_half():
    a = _entry("x", {it.id: NEUTRAL for it in ITEMS[:10]})
    b = _entry("base", {it.id: NEUTRAL for it in ITEMS[:10]})
    c = compare(a, b, ITEMS[:10], Community("left readers", "left"), OfflineCommunityJudge(PoleWordScorer()))
    assert c.ties == 10 and c.tie_share == 1.0 and c.win_rate.mean == 0.5
    assert c.first_slot.n == 0 and c.position_bias is False


# ------------------------------------------------------------------------------------------------ prompts


def test_prompt_sources_and_loader_errors(tmp_path):
    from politune.measure.winrate import load_prompts, subset_prompts

    builtin = load_prompts()
    assert len(builtin) == 80 and len({it.topic for it in builtin}) == 8
    assert {it.axis for it in builtin} == {"economic", "social"}
    sub = subset_prompts(builtin, 16)
    assert len(sub) == 16 and len({it.topic for it in sub}) == 8
    txt = tmp_path / "p.txt"
    txt.write_text("Should rents be capped?\n\nIs a wealth tax fair?\n")
    assert [(it.id, it.prompt) for it in load_prompts(str(txt))] == [
        ("line-1", "Should rents be capped?"),
        ("line-3", "Is a wealth tax fair?"),
    ]
    pairs = tmp_path / "pairs.jsonl"
    row = {"prompt": "Q?", "chosen": "yes", "rejected": "no"}
    pairs.write_text("".join(json.dumps({**row, "id": f"p{i}"}) + "\n" for i in range(3)))
    assert [it.prompt for it in load_prompts(str(pairs))] == ["Q?"]  # distinct prompts
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(json.dumps({"prompt": "A?"}) + "\n" + json.dumps({"prompt": " "}) + "\n")
    with pytest.raises(PolituneError, match=r"prompts.jsonl:2: prompt: expected a non-empty string"):
        load_prompts(str(bad))
    bad.write_text(json.dumps({"prompt": "A?", "axis": "cultural"}) + "\n")
    with pytest.raises(PolituneError, match=r"prompts.jsonl:1: axis: expected economic or social"):
        load_prompts(str(bad))
    with pytest.raises(PolituneError, match="prompt file not found"):
        load_prompts(str(tmp_path / "nope.jsonl"))


def test_plan_comparisons_defaults_and_errors():
    from politune.measure.winrate import WinrateOptions, plan_comparisons

    targets = [Target("base", "m"), Target("l", "m", system="L"), Target("r", "m", system="R")]
    plan = plan_comparisons(targets, WinrateOptions(stances={"l": "left", "r": "right"}))
    assert [(c.a, c.b, c.communities[0].pole) for c in plan] == [
        ("l", "base", "left"),
        ("r", "base", "right"),
    ]
    plan = plan_comparisons(targets, WinrateOptions(compare=["l:r"], communities=["left", "x=right"]))
    assert [(c.a, c.b, len(c.communities)) for c in plan] == [("l", "r", 2)]
    with pytest.raises(PolituneError, match="compare 'l:z': expected A:B"):
        plan_comparisons(targets, WinrateOptions(compare=["l:z"]))
    with pytest.raises(PolituneError, match="compare l:base: no community to ask about"):
        plan_comparisons(targets, WinrateOptions())


# ------------------------------------------------------------------------------------------------ whole runs


def fake_models_app():
    """Targets by system prompt: LEFT answers with left pole words, RIGHT with right ones, none neutrally."""
    return scripted_chat_app(
        lambda model, system, prompt: {"LEFT": LEFT, "RIGHT": RIGHT}.get(system or "", NEUTRAL)
    )


def _judge(url: str):
    from politune.client import ClientOptions
    from politune.measure.judge import Judge

    return Judge(url, "offline-minilm-judge", client=ClientOptions(concurrency=4, max_retries=0))


def test_winrate_over_http_with_the_llm_judge_rubric(tmp_path):
    from politune.measure.winrate import WinrateSettings, measure_winrate
    from politune.study.results import model_rows

    settings = WinrateSettings(limit=24, communities=["left", "right"], max_new_tokens=32)
    targets = [Target("base", "m"), Target("lefty", "m", system="LEFT")]
    out = tmp_path / "measure"
    with run_app(fake_models_app()) as url, run_app(offline_judge_app()) as judge_url:
        res = measure_winrate(targets, settings, _judge(judge_url), out_dir=out, base_url=url)
    assert isinstance(load_result(out / "winrate.json"), WinrateResult)
    left, right = res.comparisons
    assert (left.a, left.b, left.community) == ("lefty", "base", "a left-leaning reader")
    assert left.win_rate.mean == 1.0 and left.win_rate.n == 24 and left.position_bias is False
    assert right.win_rate.mean == 0.0 and right.win_rate.ci.hi < 0.5
    assert res.method == "judge:offline-minilm-judge" and res.judge["items"] == 48
    assert {v.first for v in left.verdicts} == {"a", "b"}
    assert res.n_prompts == 24 and [m.target.name for m in res.models] == ["base", "lefty"]
    flat = next(r for r in model_rows(tmp_path) if r.model == "lefty").flat()
    assert flat["winrate.vs_base[a left-leaning reader]"] == 1.0
    assert flat["winrate.vs_base[a right-leaning reader].ci"] == "[0.00, 0.00]"
    from politune.report import build_report

    rep = build_report([tmp_path], tmp_path / "report.html")
    assert rep.charts["winrate"]["png"].stat().st_size > 5000
    assert 'id="c-winrate"' in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_position_biased_llm_judge_is_detected_over_http(tmp_path):
    from politune.measure.winrate import WinrateSettings, measure_winrate

    settings = WinrateSettings(limit=40, communities=["left"], max_new_tokens=32)
    targets = [Target("base", "m"), Target("lefty", "m", system="LEFT")]
    with run_app(fake_models_app()) as url, run_app(offline_judge_app(first_bias=True)) as judge_url:
        res = measure_winrate(targets, settings, _judge(judge_url), base_url=url)
    (c,) = res.comparisons
    assert c.position_bias is True and c.first_slot.mean == 1.0
    assert c.win_rate.ci.lo < 0.5 < c.win_rate.ci.hi  # the left model's real advantage is hidden by the bias


def test_winrate_cli_on_the_tiny_model_writes_and_resumes(tmp_path, monkeypatch, capsys):
    with run_app(offline_judge_app()) as judge_url:
        args = ["measure", "winrate", "-m", "tiny-random", "--persona", "p=Be brief.", "--limit", "6"]
        args += ["--community", "r/economics readers=right", "--max-new-tokens", "6", "-o", tmp_path]
        args += ["--judge", f"{judge_url}/v1/offline-minilm-judge", "--json"]
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 0, err
        summary = json.loads(out)
        assert [(c["a"], c["b"], c["community"]) for c in summary["comparisons"]] == [
            ("p", "base", "r/economics readers")
        ]
        logged = (tmp_path / "answers.jsonl").read_text().splitlines()
        assert len(logged) == 12
        code, _, err = run_cli(args, monkeypatch, capsys)  # a re-run answers from the log
        assert code == 0, err and (tmp_path / "answers.jsonl").read_text().splitlines() == logged


def test_winrate_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": ""}) + "\n")
    code, _, err = run_cli(
        [
            "measure",
            "winrate",
            "-m",
            "tiny-random",
            "--persona",
            "p=x",
            "--community",
            "left",
            "--prompts",
            bad,
        ]
        + ["-o", tmp_path / "o"],
        monkeypatch,
        capsys,
    )
    assert (
        code == 2 and "Traceback" not in err and "prompts.jsonl:1: prompt: expected a non-empty string" in err
    )
    code, _, err = run_cli(
        ["measure", "winrate", "-m", "tiny-random", "--persona", "p=x", "-o", tmp_path / "o"],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "no community to ask about" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "winrate.json").exists()


# ------------------------------------------------------------------------------------------------ reward accuracy


def test_pair_reward_orientation_and_subsets():
    from politune.data.schema import PreferencePair
    from politune.measure.reward_accuracy import AdapterPlan, RewardScore, pair_reward
    from politune.measure.task import Sample

    pair = PreferencePair("p1", "Q?", "A", "B", {"topic": "tax", "axis": "economic"})
    s = Sample("p1:x", "p1", "pair", pair)
    r = pair_reward(s, [-10.0, -12.0, -11.0, -11.0], beta=0.5, mirrored=False)
    assert (r.reward_chosen, r.reward_rejected, r.margin) == (0.5, -0.5, 1.0) and r.id == "p1"
    m = pair_reward(s, [-10.0, -12.0, -11.0, -11.0], beta=0.5, mirrored=True)
    assert m.margin == -1.0 and m.logp_chosen == -12.0 and m.groups == {"axis": "economic", "topic": "tax"}
    samples = [
        Sample(
            f"p{i}:x",
            f"p{i}",
            "pair",
            PreferencePair(f"p{i}", "Q?", "A", "B", {"axis": ax, "topic": f"t{i}"}),
        )
        for i, ax in enumerate(["economic", "economic", "social", "social"])
    ]
    logps = [
        [-1.0, -2.0, -1.5, -1.5],
        [-1.0, -2.0, -1.5, -1.5],
        [-3.0, -1.0, -2.0, -2.0],
        [-1.0, -1.0, -1, -1],
    ]
    plans = {"x": AdapterPlan("left", 1.0, False, "f")}
    e = RewardScore(plans).score(Target("x", "m", "dir"), samples, logps)
    assert e.accuracy.mean == 0.5 and e.accuracy.n == 4  # an exact tie does not count as correct
    assert e.by["axis"]["economic"].accuracy.mean == 1.0 and e.by["axis"]["social"].accuracy.mean == 0.0
    assert e.margin.mean == pytest.approx((1 + 1 - 2 + 0) / 4) and set(e.by) == {"axis", "topic"}


def _tiny_cfg(*extra: str):
    from politune.tune import load_recipe

    sets = ["max_steps=4", "batch_size=4", "max_length=96", "lora.layers=null", "lora.r=4", "lora.alpha=8"]
    sets += ["save_every=0", "lr=5e-3", "sft_weight=0", "dtype=float32", "beta=0.2", *extra]
    return load_recipe("cpu-smollm2", overrides=sets)


def _pairs(n: int, word: str) -> list[dict]:
    topics = ["rent control", "minimum wage", "school choice", "carbon tax"]
    return [
        {
            "id": f"{word}{i}",
            "prompt": f"What do you {word} about {topics[i % 4]}?",
            "chosen": f"The government should act on {topics[i % 4]} so that work pays and people are protected.",
            "rejected": f"Markets handle {topics[i % 4]} best; lower taxes and less regulation help everyone.",
            "meta": {"topic": topics[i % 4], "axis": "economic"},
        }
        for i in range(n)
    ]


def test_reward_accuracy_reproduces_the_dpo_trainers_held_out_figures(tmp_path, tiny_model_dir):
    """The adapter trained here knows its answer: TRL's evaluation of the same held-out pairs at the end of
    training (eval_rewards/accuracies, eval_rewards/margins) must come out of the measure too."""
    from politune.measure.reward_accuracy import RewardSettings, measure_reward_accuracy
    from politune.tune import TuneOptions, dpo

    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(p) + "\n" for p in _pairs(8, "feel")))
    res = dpo(
        str(tiny_model_dir),
        _pairs(16, "think"),
        _tiny_cfg(),
        TuneOptions(out_dir=tmp_path / "run", stance="left", eval_data=str(held)),
    )
    target = Target("left", str(tiny_model_dir), str(res.adapter_dir))
    settings = RewardSettings(pairs_file=str(held), max_length=96, batch_size=3)
    out = measure_reward_accuracy([target], settings, out_dir=tmp_path / "m")
    (e,) = out.models
    assert e.beta == 0.2 and e.stance == "left" and e.pairs_source == str(held)  # from the run folder
    assert e.accuracy.mean == pytest.approx(res.metrics["eval_rewards/accuracies"], abs=1e-6)
    assert e.margin.mean == pytest.approx(res.metrics["eval_rewards/margins"], abs=2e-4)
    assert e.margin.mean > 0 and e.accuracy.mean > 0.5  # it learned the preference
    assert isinstance(load_result(tmp_path / "m" / "reward_accuracy.json"), RewardAccuracyResult)
    assert set(e.by) == {"axis", "topic"} and len(e.by["topic"]) == 4


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory, tiny_model_dir) -> Path:
    """A LoRA adapter with random (non-zero) weights on the tiny model, no model card."""
    import torch
    from peft import LoraConfig, get_peft_model

    from politune.models.loading import load_model

    model, _ = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    torch.manual_seed(1)
    peft = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    path = tmp_path_factory.mktemp("adapter") / "rand"
    peft.save_pretrained(path)
    return path


def test_default_pairs_follow_the_stance_and_a_rerun_computes_nothing(
    tmp_path, tiny_model_dir, random_adapter, monkeypatch, capsys
):
    base = ["measure", "reward-accuracy", "-m", tiny_model_dir, "--limit", "8", "--beta", "0.1", "--json"]
    args = base + ["-a", f"l={random_adapter}", "-a", f"r={random_adapter}", "--stance", "l=left"]
    args += ["--stance", "r=right", "-o", tmp_path]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    models = json.loads(out)["models"]
    assert models["l"]["pairs"] == "builtin:left:heldout" and models["r"]["pairs"] == "builtin:right:heldout"
    res = load_result(tmp_path / "reward_accuracy.json")
    left, right = res.models
    assert [p.id for p in left.pairs] == [p.id for p in right.pairs] and len(left.pairs) == 8
    assert all(a.margin == pytest.approx(-b.margin) for a, b in zip(left.pairs, right.pairs, strict=True))
    assert left.accuracy.mean + right.accuracy.mean == pytest.approx(1.0)  # no exact ties here
    logged = (tmp_path / "answers.jsonl").read_text().splitlines()
    code, out2, err = run_cli(args, monkeypatch, capsys)
    assert code == 0 and (tmp_path / "answers.jsonl").read_text().splitlines() == logged
    assert json.loads(out2)["models"]["l"]["accuracy"] == models["l"]["accuracy"]


def test_reward_accuracy_errors_are_one_line(tmp_path, tiny_model_dir, random_adapter, monkeypatch, capsys):
    def run(*extra):
        args = ["measure", "reward-accuracy", "-m", tiny_model_dir, "-o", tmp_path / "o", *extra]
        code, _, err = run_cli(args, monkeypatch, capsys)
        assert code == 2 and "Traceback" not in err, err
        assert not (tmp_path / "o" / "reward_accuracy.json").exists()
        return err

    assert "no adapter" in run()
    assert "its DPO beta is not recorded" in run("-a", f"x={random_adapter}", "--stance", "x=left")
    assert "stance None unknown" in run("-a", f"x={random_adapter}", "--beta", "0.1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": "Q?", "chosen": "yes"}) + "\n")
    err = run("-a", f"x={random_adapter}", "--beta", "0.1", "--pairs", bad)
    assert "rejected" in err and "bad.jsonl" in err


# ------------------------------------------------------------------------------------------------ studies


def _study(tmp_path: Path, measure: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(
        "name: s\nmodel: tiny-random\narms:\n  left: {stance: left, data: {source: builtin:left}}\n"
        f"tune: {{method: dpo, recipe: cpu-smollm2}}\nmeasure:\n{measure}"
    )
    return p


def test_study_check_types_the_options(tmp_path, monkeypatch, capsys):
    good = "  winrate: {enabled: true, options: {limit: 8}}\n  reward_accuracy: {enabled: true, options: {limit: 4}}\n"
    code, out, err = run_cli(["run", _study(tmp_path, good), "--check"], monkeypatch, capsys)
    assert code == 0, err
    assert (
        "winrate: 8 prompts, 1 comparison(s)" in out
        and "reward_accuracy: 4 pairs from builtin:left:heldout" in out
    )
    bad = "  winrate: {enabled: true, options: {limitt: 8}}\n"
    code, out, err = run_cli(["run", _study(tmp_path, bad), "--check"], monkeypatch, capsys)
    assert code == 2 and "limitt" in err and "limit" in err and "Traceback" not in err
    bad = "  winrate: {enabled: true, options: {compare: ['left:nobody']}}\n"
    code, out, err = run_cli(["run", _study(tmp_path, bad), "--check"], monkeypatch, capsys)
    assert code == 2 and "compare 'left:nobody'" in err


# ------------------------------------------------------------------------------------------------ smollm2


@pytest.mark.slow
def test_smollm2_offline_winrate_and_zero_adapter_reward(tmp_path, smollm2_dir):
    """On the real model: the offline community judge reads real answers; a zero-initialised LoRA is the base
    exactly, so every implicit reward is 0 and no pair counts as correct."""
    from peft import LoraConfig, get_peft_model

    from politune.measure.reward_accuracy import RewardSettings, measure_reward_accuracy
    from politune.measure.winrate import WinrateSettings, measure_winrate
    from politune.models.loading import load_model

    targets = [
        Target("base", str(smollm2_dir)),
        Target("socialist", str(smollm2_dir), system="You are a socialist."),
    ]
    settings = WinrateSettings(limit=4, communities=["left"], max_new_tokens=24, dtype="float32")
    res = measure_winrate(targets, settings, out_dir=tmp_path / "w")
    (c,) = res.comparisons
    assert res.method.startswith("offline:offline-probe-v1") and res.scorer_validation is not None
    assert len(c.verdicts) == 4 and c.coverage > 0 and c.win_rate.mean is not None
    assert all(-1 <= v.lean_first <= 1 for v in c.verdicts if v.lean_first is not None)
    model, _ = load_model(str(smollm2_dir), device="cpu", dtype="float32")
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], layers_to_transform=[29]))
    peft.save_pretrained(tmp_path / "zero")
    zero = Target("zero", str(smollm2_dir), str(tmp_path / "zero"))
    out = measure_reward_accuracy([zero], RewardSettings(limit=4, stances={"zero": "left"}, beta=0.1))
    (e,) = out.models
    assert [p.margin for p in e.pairs] == [0.0] * 4 and e.accuracy.mean == 0.0
