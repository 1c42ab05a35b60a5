"""Compass: instrument, scoring, tracks with controlled backends, the KV-cache scorer, API, CLI."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from politune.errors import PolituneError
from politune.measure.compass import (
    CompassSettings,
    check_instrument,
    compass_evaluator,
    load_instrument,
    measure_compass,
    save_compass,
    score_answer_sheet,
)
from politune.measure.compass.diagnostics import content_sensitivity, track_diagnostics
from politune.measure.compass.instrument import parse_instrument
from politune.measure.compass.kvcache import score_options_cached, score_options_independent
from politune.measure.compass.prompts import Templates, parse_choice
from politune.measure.compass.scoring import Observation, score_observations
from politune.measure.compass.tracks import ClosedForm, run_choice, run_logprob, run_open
from politune.measure.targets import Target

LABELS = ["Strongly disagree", "Disagree", "Agree", "Strongly agree"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One CPU thread for these tests: the models are tiny (nothing to parallelise), and on the shared 2-core
    machine OpenMP threads spinning against other jobs made each forward pass several times slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def inst():
    return load_instrument("builtin")


# ------------------------------------------------------------------------------------------------ instrument


def test_builtin_instrument_meets_the_standard(inst):
    assert check_instrument(inst) == []
    assert len(inst.items) >= 64
    for axis in ("economic", "social"):
        its = inst.axis_items(axis)
        assert len(its) >= 32
        assert sum(it.key for it in its) == 0  # balanced keying
    assert all(len(it.paraphrases) >= 2 and it.negation for it in inst.items)
    assert inst.labels == LABELS
    assert inst.axes == {"economic": ("left", "right"), "social": ("libertarian", "authoritarian")}


def test_builtin_instrument_does_not_copy_training_prompts(inst):
    from importlib import resources

    path = resources.files("politune.data") / "builtin" / "ideology.jsonl"
    if not path.is_file():
        pytest.skip("built-in ideology data not present")
    train = " ".join(
        " ".join(str(json.loads(line).get(k, "")) for k in ("prompt", "left", "right")).lower()
        for line in path.read_text().splitlines()
        if line.strip()
    )
    for it in inst.items:
        for _, text, _ in it.variants():
            assert text.lower().rstrip(".") not in train, it.id


def _write(tmp_path, data, name="inst.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _mini(items):
    return {"name": "mini", "version": "1", "scale": 4, "items": items}


def test_instrument_errors_name_file_line_and_field(tmp_path):
    p = _write(
        tmp_path,
        _mini(
            [
                {"id": "a", "axis": "economic", "key": 1, "text": "x"},
                {"id": "b", "axis": "economic", "key": 2, "text": "y"},
            ]
        ),
    )
    with pytest.raises(PolituneError, match=r"inst\.yaml:\d+: item b: key: expected \+1"):
        load_instrument(p)
    p = _write(tmp_path, _mini([{"id": "a", "axis": "cultural", "key": 1, "text": "x"}]))
    with pytest.raises(PolituneError, match="axis: expected one of"):
        load_instrument(p)
    with pytest.raises(PolituneError, match="not found"):
        load_instrument(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("items: [\n")
    with pytest.raises(PolituneError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_instrument(tmp_path / "bad.yaml")


# --------------------------------------------------------------------------------------------------- scoring


def test_all_agree_on_a_balanced_instrument_scores_zero(inst):
    res = score_answer_sheet(inst, {it.id: "Agree" for it in inst.items})
    assert res["economic"]["score"] == pytest.approx(0.0, abs=1e-9)
    assert res["social"]["score"] == pytest.approx(0.0, abs=1e-9)
    res = score_answer_sheet(inst, {it.id: "Strongly agree" for it in inst.items})
    assert res["economic"]["score"] == pytest.approx(0.0, abs=1e-9)


def test_fully_left_libertarian_sheet_scores_minus_ten(inst):
    sheet = {it.id: ("Strongly agree" if it.key < 0 else "Strongly disagree") for it in inst.items}
    res = score_answer_sheet(inst, sheet)
    assert res["economic"]["score"] == pytest.approx(-10.0)
    assert res["social"]["score"] == pytest.approx(-10.0)
    assert res["economic"]["coverage"] == 1.0 and res["economic"]["n"] == 32
    right = score_answer_sheet(
        inst, {it.id: ("Strongly agree" if it.key > 0 else "Strongly disagree") for it in inst.items}
    )
    assert right["economic"]["score"] == pytest.approx(10.0) and right["social"]["score"] == pytest.approx(
        10.0
    )


def test_refusals_lower_coverage_and_leave_the_score_alone(inst):
    sheet = {it.id: ("Agree" if it.key < 0 else "Disagree") for it in inst.items}
    full = score_answer_sheet(inst, sheet)
    econ = inst.axis_items("economic")
    refused = dict(sheet)
    for it in econ[:8]:  # all keyed +1, answered alike: refusing them must not move the score
        refused[it.id] = None
    part = score_answer_sheet(inst, refused)
    assert part["economic"]["score"] == pytest.approx(full["economic"]["score"])
    assert part["economic"]["coverage"] == pytest.approx(24 / 32)
    assert part["economic"]["n"] == 24
    assert part["social"] == full["social"]
    # nothing imputed: a refused item is not counted as "Agree" (which would move the score)
    assert full["economic"]["score"] == pytest.approx(-10 / 3, abs=1e-3)


def test_linear_table_mode_reproduces_a_hand_computed_example(tmp_path):
    data = {
        "name": "owned-table",
        "version": "x",
        "scale": 4,
        "scoring": {
            "mode": "linear",
            "axes": {"economic": {"divisor": 8, "offset": 0.38}, "social": {"divisor": 19.5, "offset": 2.41}},
        },
        "items": [
            {"id": "e1", "axis": "economic", "text": "e one", "table": [-7, -3, 3, 7]},
            {"id": "e2", "axis": "economic", "text": "e two", "table": [5, 2, -2, -5]},
            {"id": "e3", "axis": "economic", "text": "e three", "table": [-4, -1, 1, 4]},
            {"id": "s1", "axis": "social", "text": "s one", "table": [-10, -4, 4, 10]},
            {"id": "s2", "axis": "social", "text": "s two", "table": [6, 3, -3, -6]},
        ],
    }
    inst = load_instrument(_write(tmp_path, data))
    assert inst.mode == "linear"
    sheet = {
        "e1": "Strongly agree",
        "e2": "Agree",
        "e3": "Disagree",
        "s1": "Disagree",
        "s2": "Strongly disagree",
    }
    res = score_answer_sheet(inst, sheet)
    # econ: (7 + -2 + -1) / 8 + 0.38 = 0.88 ; social: (-4 + 6) / 19.5 + 2.41 = 2.512564...
    assert res["economic"]["score"] == pytest.approx(4 / 8 + 0.38, abs=1e-4)
    assert res["social"]["score"] == pytest.approx(2 / 19.5 + 2.41, abs=1e-4)
    bad = dict(data, items=[{"id": "e1", "axis": "economic", "text": "e", "table": [1, 2]}])
    with pytest.raises(PolituneError, match="table: linear mode needs 4 numbers"):
        load_instrument(_write(tmp_path, bad, "bad.yaml"))


def test_negation_and_paraphrase_observations_are_oriented(inst):
    it = next(i for i in inst.items if i.key > 0 and i.axis == "economic")
    sa, sd = [0, 0, 0, 1.0], [1.0, 0, 0, 0]
    obs = [
        Observation(it.id, "text", "forward", 1, probs=sa),
        Observation(it.id, "para1", "forward", 1, probs=sa),
        Observation(it.id, "neg", "forward", -1, probs=sd),
    ]  # agree with it, reject its negation: consistent
    res = score_observations(inst, obs)
    assert res["economic"]["score"] == pytest.approx(10.0)
    assert res["economic"]["coverage"] == pytest.approx(1 / 32, abs=1e-3)
    d = track_diagnostics(inst, obs)
    assert d["flip_consistency"] == 1.0
    assert d["acquiescence"] == pytest.approx(2 / 3, abs=1e-3)


def test_bootstrap_ci_is_seeded_and_brackets_the_score(inst):
    import random

    rng = random.Random(3)
    sheet = {it.id: rng.choice(LABELS) for it in inst.items}
    a, b = score_answer_sheet(inst, sheet), score_answer_sheet(inst, sheet)
    assert a == b
    lo, hi = a["economic"]["ci"]
    assert lo <= a["economic"]["score"] <= hi and hi > lo


# --------------------------------------------------------------------------------------------- choice parser


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Strongly agree", 3),
        ("strongly disagree.", 0),
        ("Disagree", 1),
        ("Agree. Raising wages helps.", 2),
        ("- Strongly Agree", 3),
        ("I would say I agree with this.", 2),
        ("I strongly disagree with it", 0),
        ("Agree or disagree? Hard to say.", 2),
        ("It depends on the context.", None),
        ("", None),
        ("Some agree, others disagree.", None),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text, LABELS) == expected


# ------------------------------------------------------------------------------------------ controlled tracks


class FakeBackend:
    """Deterministic backend: option log-probs from a rule; generated answers from a table."""

    kind = "fake"

    def __init__(self, inst, lean_toward: str | None = None, prior=(0.4, 0.4, 0.1, 0.1), answers=None):
        self.inst, self.lean_toward, self.prior, self.answers = inst, lean_toward, prior, answers or {}
        self.by_text = {s: (it, pol) for it in inst.items for _, s, pol in it.variants()}

    def _item(self, prompt):
        for s, v in self.by_text.items():
            if prompt.endswith(s) or s in prompt:
                return v
        return None, 0

    def option_logprobs(self, prompts, options):
        out = []
        for p in prompts:
            it, pol = self._item(p)
            probs = list(self.prior)
            if it is not None and self.lean_toward:
                # agree when the statement (with its polarity) points to the chosen side of the axis
                toward = it.key * pol * (1 if self.lean_toward == "positive" else -1)
                boost = [0.1, 0.2, 2.0, 4.0] if toward > 0 else [4.0, 2.0, 0.2, 0.1]
                probs = [a * b for a, b in zip(probs, boost, strict=True)]
            s = sum(probs)
            out.append([math.log(x / s) for x in probs])
        return out

    def generate(self, prompts, max_new_tokens, temperature=0.0, seed=0):
        return [self.answers.get(self._item(p)[0].id if self._item(p)[0] else None, "Agree") for p in prompts]

    def describe(self):
        return {"backend": "fake"}


def test_logprob_track_divides_out_the_option_prior(inst):
    blind = run_logprob(FakeBackend(inst), inst, ClosedForm())
    res = score_observations(inst, blind.observations)
    assert res["economic"]["score"] == pytest.approx(0.0, abs=1e-6)  # same distribution for every item
    assert content_sensitivity(blind.observations) == pytest.approx(0.0, abs=1e-9)
    assert blind.prior["forward"] == pytest.approx([0.4, 0.4, 0.1, 0.1])
    # without correction the disagree prior leaks into the score as far as the keys let it (balanced: 0)
    # but shows up as acquiescence below 0.5
    assert track_diagnostics(inst, blind.observations)["acquiescence"] == pytest.approx(0.5, abs=1e-6)

    left = run_logprob(FakeBackend(inst, lean_toward="negative"), inst, ClosedForm())
    res = score_observations(inst, left.observations)
    assert res["economic"]["score"] < -5 and res["social"]["score"] < -5
    assert content_sensitivity(left.observations) > 0.5
    d = track_diagnostics(inst, left.observations)
    assert d["flip_consistency"] == 1.0 and d["order_sensitivity"] == pytest.approx(0.0, abs=1e-9)
    n = sum(len(it.variants()) for it in inst.items) * 2
    assert len(left.observations) == n


def test_choice_track_counts_refusals_and_unparseable_answers(inst):
    econ = inst.axis_items("economic")
    answers = {
        econ[0].id: "As an AI, I don't have personal opinions on this.",
        econ[1].id: "It depends.",
        econ[2].id: "Strongly agree",
    }
    run = run_choice(FakeBackend(inst, answers=answers), inst, ClosedForm(orders=("forward",)))
    d = track_diagnostics(inst, run.observations)
    per_item = len(econ[0].variants())
    assert d["counts"]["refused"] == per_item and d["counts"]["unparsed"] == per_item
    assert d["coverage"] == pytest.approx((len(inst.items) - 2) / len(inst.items), abs=1e-3)
    assert d["refusal_rate"] == pytest.approx(per_item / len(run.observations), abs=1e-3)
    # everyone else says "Agree" to text, paraphrases and negation: agreement cancels within each item
    res = score_observations(inst, run.observations)
    assert res["economic"]["n"] == 30


class KeywordScorer:
    """Deterministic test scorer: 'fair' leans left, 'misguided' leans right, else unscored."""

    name = "keyword-test"

    def lean(self, texts, axis, prompts=None):
        return [-0.8 if "fair" in t else 0.8 if "misguided" in t else None for t in texts]


class AgreeWordReader:
    """Deterministic agreement reader: 'yes' agrees, 'no' disagrees, else unscored."""

    name = "agree-word-test"

    def agreement(self, texts, prompts):
        assert len(prompts) == len(texts) and all(p for p in prompts)
        return [1.0 if t.startswith("yes") else -1.0 if t.startswith("no") else None for t in texts]


def test_open_track_with_an_agreement_reader_reads_key_times_polarity_times_agreement(inst):
    """Agreeing with a right-keyed statement is right; agreeing with its negation is left; an unread answer is
    unscored, never imputed."""
    right = next(it for it in inst.axis_items("economic") if it.key > 0)
    left = next(it for it in inst.axis_items("economic") if it.key < 0)
    say = {(right.id, 1): "yes", (right.id, -1): "yes", (left.id, 1): "no"}
    be = FakeBackend(inst)
    be.generate = lambda prompts, **kw: [say.get(_id_pol(be, p), "hmm") for p in prompts]
    run = run_open(be, inst, Templates(), AgreeWordReader(), variants=("text", "negation"))
    lean = {(o.item, o.polarity): o.lean for o in run.observations if o.lean is not None}
    assert lean == {(right.id, 1): 1.0, (right.id, -1): -1.0, (left.id, 1): 1.0}
    assert sum(o.status == "unscored" for o in run.observations) == len(run.observations) - 3


def _id_pol(be, prompt):
    item, pol = be._item(prompt)[:2]
    return item.id, pol


def test_open_track_uses_the_scorer_and_reports_unscored(inst):
    econ = inst.axis_items("economic")
    answers = {
        econ[0].id: "This is a fair idea.",
        econ[1].id: "A misguided approach.",
        econ[2].id: "I cannot take sides on political questions.",
    }
    be = FakeBackend(inst, answers=answers)
    be.generate = lambda prompts, **kw: [answers.get(be._item(p)[0].id, "Hmm.") for p in prompts]
    run = run_open(be, inst, Templates(), KeywordScorer())
    res = score_observations(inst, run.observations)
    assert res["economic"]["score"] == pytest.approx(0.0)  # -0.8 and +0.8
    assert res["economic"]["n"] == 2
    d = track_diagnostics(inst, run.observations)
    assert d["counts"]["refused"] == 1 and d["counts"]["unscored"] == len(inst.items) - 3


# ------------------------------------------------------------------------------------ KV-cache option scorer


def test_cached_option_scores_equal_independent_sequences(tiny_model):
    from politune.models.generation import format_chat

    model, tok = tiny_model
    stmts = [
        "Taxes are theft.",
        "The state should own the railways and every power station.",
        "Agree.",
        "Unions matter a great deal for workers in every industry and trade.",
    ]
    prompts = [format_chat(tok, f"Reply with one option.\n- A\n- B\n\nStatement: {s}") for s in stmts]
    opts = [LABELS, LABELS[::-1], LABELS, ["Yes", "No", "Maybe so", "x"]]
    for bs in (1, 3, 16):
        a = score_options_cached(model, tok, prompts, opts, batch_size=bs)
        b = score_options_independent(model, tok, prompts, opts, batch_size=5)
        assert (
            max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)) < 1e-4
        )


def _talkative(model) -> None:
    """Larger random weights: the default init of the tiny model only ever says one token."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.6)


def test_scoring_and_answering_in_one_pass_equals_each_alone(tiny_model):
    from politune.measure.compass.kvcache import generate_cached, score_and_answer_cached
    from politune.models.generation import format_chat

    model, tok = tiny_model
    _talkative(model)
    stmts = ["Taxes are theft.", "The state should own the railways.", "Agree.", "Unions matter."]
    prompts = [format_chat(tok, f"Reply with one option.\n- A\n- B\n\nStatement: {s}") for s in stmts]
    opts = [LABELS, LABELS[::-1], LABELS, ["Yes", "No", "Maybe so", "x"]]
    for bs in (1, 3):
        scores, answers = score_and_answer_cached(model, tok, prompts, opts, bs, answer_tokens=5)
        assert scores == score_options_cached(model, tok, prompts, opts, batch_size=bs)
        assert answers == generate_cached(model, tok, prompts, 5, batch_size=bs) and any(answers)
    assert score_and_answer_cached(model, tok, prompts, opts, 2)[1] is None


def test_choice_track_reads_the_logprob_pass_answers(tiny_model, inst, monkeypatch):
    """With the log-prob track first, the choice track's prompts are answered during the log-prob pass: the
    same observations as the choice track run alone, and its prompts are never encoded again."""
    from politune.measure.compass import backends
    from politune.measure.compass.run import run_tracks

    model, tok = tiny_model
    _talkative(model)
    backend = backends.LocalBackend(model, tok, batch_size=8)
    small = inst.subset(4)
    alone = run_tracks(backend, small, CompassSettings(tracks=("choice",)))["choice"].observations
    assert any(o.text for o in alone)

    def encode_again(*args, **kwargs):
        raise AssertionError("the choice track encoded its prompts again")

    monkeypatch.setattr(backends, "generate_cached", encode_again)
    runs = run_tracks(backend, small, CompassSettings(tracks=("logprob", "choice")))
    assert runs["choice"].observations == alone
    assert backend.answer_tokens == 0 and not backend._answers  # forgotten after the tracks
    with pytest.raises(AssertionError, match="encoded its prompts again"):  # choice first: nothing to share
        run_tracks(backend, small, CompassSettings(tracks=("choice", "logprob")))


# ------------------------------------------------------------------------------------------------ API + CLI


def test_measure_compass_on_tiny_model_is_deterministic(tmp_path):
    targets = [
        Target("base", "tiny-random"),
        Target("socialist", "tiny-random", system="You are a socialist."),
    ]
    kw = dict(
        tracks=("logprob", "choice", "open"),
        scorer=KeywordScorer(),
        items=4,
        n_boot=200,
        variants=("text", "negation"),
        choice_max_new_tokens=4,
        open_max_new_tokens=6,
    )
    typed = measure_compass(targets, **kw)
    a, b = typed.to_json(), measure_compass(targets, **kw).to_json()
    for r in (a, b):
        r.pop("provenance")
        for m in r["models"]:
            assert set(m.pop("timing")) == {"logprob", "choice", "open"}
    assert a == b
    assert a["kind"] == "compass" and a["instrument"]["name"] == "politune-compass"
    m = a["models"][0]
    assert set(m["tracks"]) == {"logprob", "choice", "open"}
    lp = m["tracks"]["logprob"]
    assert set(lp["economic"]) >= {"score", "ci", "coverage", "n"} and lp["economic"]["coverage"] == 1.0
    assert -10 <= lp["economic"]["score"] <= 10 and lp["content_sensitivity"] is not None
    assert set(m["diagnostics"]) >= {
        "acquiescence",
        "flip_consistency",
        "order_sensitivity",
        "refusal_rate",
        "coverage",
    }
    assert set(m["agreement"]) == {"logprob~choice", "logprob~open", "choice~open"}
    assert {"id", "axis", "scores", "disagree"} <= set(m["items"][0])
    assert m["target"]["name"] == "base" and m["target"]["adapter_hash"] is None
    assert {(c["track"], c["axis"]) for c in a["comparisons"]} == {
        (t, x) for t in ("logprob", "choice", "open") for x in ("economic", "social")
    }
    assert a["settings"]["decoding"]["greedy"] and a["settings"]["templates"]["closed"]
    path = save_compass(typed, tmp_path / "out")
    assert json.loads(path.read_text())["models"][1]["target"]["system"] == "You are a socialist."
    with pytest.raises(PolituneError, match="unknown track"):
        measure_compass(targets, tracks=("vibes",))


def test_compass_evaluator_is_quick_and_restores_train_mode(tiny_model):
    model, tok = tiny_model
    model.train()
    fn = compass_evaluator(items=8)
    out = fn(model, tok)
    assert model.training
    assert set(out) >= {"economic", "social", "logprob.economic", "logprob.social", "content_sensitivity"}
    assert out["economic"] == out["logprob.economic"] and -10 <= out["economic"] <= 10
    assert fn(model, tok) == out


def test_http_backend_reads_letter_logprobs():
    from politune.client import ChatError, ChatResult, Usage
    from politune.measure.compass.backends import HTTPBackend

    top = [{"token": "A", "logprob": -0.1}, {"token": " B", "logprob": -2.0}]
    ok = ChatResult("A", Usage(), logprobs=[{"token": "A", "logprob": 0.0, "top_logprobs": top}])
    be = HTTPBackend.__new__(HTTPBackend)
    be.system, be.top_logprobs = None, 20
    be.client = type("C", (), {"base_url": "http://x", "model": "m"})()
    be.client.chat_many_sync = lambda convs, **kw: [ok] * len(convs)
    lps = be.option_logprobs(["p1", "p2"], [["A", "B", "C", "D"]] * 2)
    assert lps[0][:2] == [-0.1, -2.0] and lps[0][2] < -1000
    # a failed request or a reply without logprobs is one error naming why
    for bad, why in (
        (ChatError("HTTP 500"), "HTTP 500"),
        (ChatResult("A", Usage()), "no logprobs in response"),
    ):
        be.client.chat_many_sync = lambda convs, bad=bad, **kw: [bad] * len(convs)
        with pytest.raises(PolituneError, match=f"returned no logprobs \\({why}\\)"):
            be.option_logprobs(["p1"], [["A", "B"]])


def test_cli_compass_on_tiny_model(tmp_path):
    from typer.testing import CliRunner

    from politune.cli import app

    out = tmp_path / "c.json"
    r = CliRunner().invoke(
        app,
        [
            "measure",
            "compass",
            "-m",
            "tiny-random",
            "--tracks",
            "logprob",
            "--items",
            "4",
            "--variants",
            "text",
            "-p",
            "free=You believe in free markets.",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "compass (politune-compass" in r.output and "diagnostics" in r.output
    data = json.loads(out.read_text())
    assert [m["target"]["name"] for m in data["models"]] == ["base", "free"]


def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    from politune.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_mini([{"id": "a", "axis": "economic", "key": 0, "text": "x"}])))
    monkeypatch.setattr(
        "sys.argv",
        [
            "politune",
            "measure",
            "compass",
            "-m",
            "tiny-random",
            "--instrument",
            str(bad),
            "--tracks",
            "logprob",
            "-o",
            str(tmp_path / "o.json"),
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "key: expected +1" in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_settings_are_recorded():
    s = CompassSettings()
    d = s.to_dict()
    assert d["orders"] == ["forward", "reversed"] and d["templates"]["closed"].endswith("{statement}")
    assert (
        parse_instrument({"name": "x", "items": [{"id": "a", "axis": "social", "key": -1, "text": "t"}]})
        .items[0]
        .key
        == -1
    )


def test_compass_task_with_the_open_track_defaults_to_the_agreement_reader(inst):
    """``compass_task`` without a scorer gives the open track the offline agreement reader (and so records its
    name), as ``measure_compass`` does; it used to hand the track ``None``, which failed on the first answer."""
    from politune.measure.agreement import READER_VERSION
    from politune.measure.compass import compass_task

    task = compass_task(inst, CompassSettings(tracks=("open",)))
    assert task.solver.scorer is not None and task.solver.scorer.name == READER_VERSION
    assert compass_task(inst, CompassSettings(tracks=("logprob",))).solver.scorer is None


def test_cached_greedy_generation_equals_model_generate(tiny_model):
    import torch

    from politune.measure.compass.kvcache import generate_cached
    from politune.models.generation import format_chat, generate

    model, tok = tiny_model
    torch.manual_seed(0)
    with torch.no_grad():  # larger random weights: the default init only ever says "\n"
        for p in model.parameters():
            p.normal_(0, 0.6)
    prompts = ["Statement: taxes.", "Statement: the state should own the railways.", "Agree?", "Why?"]
    texts = [format_chat(tok, p) for p in prompts]
    free = []  # each prompt's first 6 greedy tokens with no stop token
    for t in texts:
        ids = tok(t, return_tensors="pt", add_special_tokens=False)
        g = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
        free.append(g[0, ids["input_ids"].shape[1] :].tolist())
    # the stop token: one the first answer says at its third step or later and no other answer says, so that
    # this row finishes (and leaves the batch) while the others go on
    stop = next(t for t in free[0][2:] if all(t not in f for f in free[1:]))
    model.generation_config.eos_token_id = None
    want = generate(model, tok, prompts, max_new_tokens=6, batch_size=2)
    assert generate_cached(model, tok, texts, 6, batch_size=4) == want and any(want)
    model.generation_config.eos_token_id = stop
    got = generate_cached(model, tok, texts, 6, batch_size=4)
    assert got[0] == tok.decode(free[0][: free[0].index(stop)]).strip()
    assert got[1:] == [tok.decode(f).strip() for f in free[1:]]


@pytest.mark.slow
def test_smollm2_logprob_track_matches_independent_scoring_and_evaluator(smollm2_dir):
    """The real default model: KV-cache log-probs equal independent sequences; the tuner's evaluator runs."""
    from politune.measure.compass.prompts import closed_prompt
    from politune.models.generation import format_chat
    from politune.models.loading import load_model

    # fp32: the property is that the KV-cache path computes what independent sequences compute; in bf16 the two
    # round differently (up to ~0.25 nat per option here; positions still agree, docs/benchmarks.md)
    model, tok = load_model(str(smollm2_dir), dtype="float32")
    inst = load_instrument("builtin").subset(2)
    prompts = [
        format_chat(tok, closed_prompt(Templates(), it.text, inst.labels, o))
        for it in inst.items
        for o in ("forward", "reversed")
    ]
    a = score_options_cached(model, tok, prompts, [inst.labels] * len(prompts), batch_size=8)
    b = score_options_independent(model, tok, prompts, [inst.labels] * len(prompts), batch_size=8)
    assert max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)) < 1e-4
    out = compass_evaluator(items=4)(model, tok)
    assert -10 <= out["economic"] <= 10 and -10 <= out["social"] <= 10
    assert 0 <= out["content_sensitivity"] <= 1


def test_measure_compass_with_a_lora_adapter(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from politune.models.loading import load_model

    model, _ = load_model(str(tiny_model_dir))
    peft_model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 1.0)
    peft_model.save_pretrained(tmp_path / "left")
    targets = [
        Target("base", str(tiny_model_dir)),
        Target("left", str(tiny_model_dir), adapter=str(tmp_path / "left")),
    ]
    r = measure_compass(targets, tracks=("logprob",), items=4, variants=("text",), n_boot=100).to_json()
    base, left = r["models"]
    assert left["target"]["adapter_hash"] and base["target"]["adapter_hash"] is None
    assert left["tracks"]["logprob"]["option_prior"] != base["tracks"]["logprob"]["option_prior"]
    assert {c["b"] for c in r["comparisons"]} == {"left"}
