"""The generate pillar: parsing, validation, templates, corpora, the pipeline end to end (against a rule-based
teacher behind a real local HTTP server, and the tiny local model), resume after SIGKILL, and the CLI.

The rule-based teacher server answers like a (very simple) teacher model would, deterministically:
- filter prompts (system mentions JSON): relevance 8 and a keyword slant when the post has a policy keyword,
  else relevance 1; posts marked ``[junk]`` get non-JSON, ``[flaky]`` non-JSON at temperature 0 only (the
  retry, sampled hotter, succeeds), ``[down]`` an HTTP 500;
- write prompts: an Instruction / Positive / Negative triplet; ``[same]`` posts get identical answers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cli_helpers import ROOT
from politune.errors import PolituneError
from politune.generate import (
    GenerateConfig,
    builtin_posts,
    check_triplet,
    filter_metrics,
    load_posts,
    load_template,
    parse_rating,
    parse_triplet,
    run_generate,
)
from politune.generate.config import WriteConfig
from politune.generate.parsing import Triplet

OUTPUTS = ("preference.jsonl", "instruction.jsonl", "filter.jsonl", "rejects.jsonl")

LEFT_WORDS = ("public", "union", "wage", "healthcare", "tenants", "climate")
RIGHT_WORDS = ("market", "cut taxes", "border", "deregulat", "police", "free enterprise")
POLICY_WORDS = LEFT_WORDS + RIGHT_WORDS + ("tax", "budget", "election", "pension")


# ------------------------------------------------------------------------------------- teacher server
class TeacherState:
    def __init__(self, latency: float = 0.0):
        self.calls: Counter = Counter()
        self.latency = latency
        self.lock = threading.Lock()


def _post_of(messages: list[dict]) -> str:
    last = messages[-1]["content"]
    start = last.index('Post: "') + len('Post: "')
    return last[start : last.index('"', start)] if '"' in last[start:] else last[start:]


def _teacher_answer(messages: list[dict], temperature: float) -> str | None:
    post = _post_of(messages)
    low = post.lower()
    if "JSON" in messages[0]["content"]:
        if "[junk]" in post or ("[flaky]" in post and temperature == 0):
            return "Sure! This post is about something."
        hits = [w for w in POLICY_WORDS if w in low]
        slant = (0.6 if any(w in low for w in RIGHT_WORDS) else 0.0) - (
            0.6 if any(w in low for w in LEFT_WORDS) else 0.0
        )
        return json.dumps(
            {"relevance": 8 if hits else 1, "topic": hits[0] if hits else "daily life", "slant": slant}
        )
    topic = messages[-1]["content"].split("Topic: ", 1)[-1].strip()
    pos = (
        f"I believe we should invest in public {topic} for everyone, funded fairly by those who can pay most."
    )
    neg = (
        pos
        if "[same]" in post
        else (
            f"I believe {topic} is best left to free markets and private choice, "
            f"with lower taxes and less government."
        )
    )
    return f"Instruction: What should be done about {topic}?\nPositive: {pos}\nNegative: {neg}"


def _teacher_app(state: TeacherState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        import asyncio

        body = await request.json()
        post = _post_of(body["messages"])
        with state.lock:
            state.calls[post] += 1
        if state.latency:
            await asyncio.sleep(state.latency)
        if "[down]" in post:
            return JSONResponse({"error": {"message": "teacher unavailable"}}, status_code=500)
        text = _teacher_answer(body["messages"], float(body.get("temperature") or 0.0))
        return {
            "id": "t",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


@pytest.fixture(scope="module")
def teacher_server():
    from politune.serve import run_app

    state = TeacherState()
    with run_app(_teacher_app(state)) as url:
        yield url, state


POSTS = [
    ("a1", "Raise the minimum wage so that work pays."),
    ("a2", "What a goal in the derby last night!"),
    ("a3", "Cut taxes and let the market decide prices."),
    ("a4", "[junk] My lemon cake recipe needs more zest."),
    ("a5", "[flaky] Fund public healthcare for every family."),
    ("a6", "[same] Tenants need protection from evictions."),
    ("a7", "Rain all week, clearing on Sunday."),
    ("a8", "Secure the border and enforce the law."),
]


def _write_corpus(path: Path, posts=POSTS) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t, "community": "test"}) + "\n" for i, t in posts))
    return path


def _cfg(tmp_path: Path, url: str, **kw) -> GenerateConfig:
    data = {
        "corpus": str(_write_corpus(tmp_path / "posts.jsonl")),
        "teacher": "rules",
        "out": str(tmp_path / "out"),
        "api": {"base_url": url, "concurrency": 4, "max_retries": 1, "timeout": 10},
        "stance": {"enabled": False},
    }
    data.update(kw)
    return GenerateConfig.model_validate(data)


def _read(out: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (out / name).read_text().splitlines()]


# ------------------------------------------------------------------------------------------ parsing
def test_generate_help_shows_each_settings_default():
    # `politune generate` flags that override a setting default to None (so a --config file's value stands) and
    # name the setting's default in their help: it must be GenerateConfig's.
    import typer

    from politune.cli import generate as generate_cli

    cfg = GenerateConfig()
    defaults = {
        "--corpus": cfg.corpus,
        "--target": cfg.target,
        "--teacher": cfg.teacher,
        "--concurrency": cfg.api.concurrency,
        "--out": cfg.out,
        "--text-column": cfg.text_column,
        "--seed": cfg.seed,
        "--batch-size": cfg.batch_size,
        "--device": cfg.device,
    }
    options = [o for o in vars(generate_cli).values() if isinstance(o, typer.models.OptionInfo)]
    shown = {o.param_decls[0]: o.help for o in options if "(default: " in (o.help or "")}
    assert sorted(shown) == sorted(defaults)
    for flag, value in defaults.items():
        assert shown[flag].endswith(f"(default: {value})"), flag


def test_parse_rating_is_strict():
    r = parse_rating('{"relevance": 7, "topic": "taxes", "slant": -0.5}')
    assert (r.relevance, r.topic, r.slant) == (7.0, "taxes", -0.5)
    assert parse_rating('```json\n{"relevance": 0, "topic": "weather", "slant": 0}\n```').topic == "weather"
    bad = {
        'Sure: {"relevance": 7, "topic": "t", "slant": 0}': "not JSON",
        '{"relevance": 7, "topic": "t", "slant": 0} and more': "not JSON",
        '{"relevance": 11, "topic": "t", "slant": 0}': "outside",
        '{"relevance": true, "topic": "t", "slant": 0}': "must be a number",
        '{"relevance": "7", "topic": "t", "slant": 0}': "must be a number",
        '{"relevance": 7, "topic": "", "slant": 0}': "topic",
        '{"relevance": 7, "topic": "t", "slant": -2}': "outside",
        "[1, 2]": "expected a JSON object",
        "": "empty",
    }
    for text, why in bad.items():
        with pytest.raises(ValueError, match=why):
            parse_rating(text)


def test_parse_and_check_triplet():
    text = (
        "**Instruction:** Should buses be free?\nPositive answer: Yes, I think public transport should be "
        "free for all.\nNegative: No, I think riders should pay fares that cover the cost."
    )
    t = parse_triplet(text)
    assert (
        t.instruction == "Should buses be free?"
        and t.positive.startswith("Yes")
        and t.negative.startswith("No")
    )
    assert check_triplet(t, WriteConfig()) is None
    with pytest.raises(ValueError, match="missing part.*Negative"):
        parse_triplet("Instruction: q?\nPositive: an answer")
    with pytest.raises(ValueError, match="twice"):
        parse_triplet("Instruction: q?\nPositive: a\nPositive: b\nNegative: c")
    cfg = WriteConfig()
    same = Triplet(
        "Should buses be free?", "Buses should be free for everyone.", "Buses should be free for everyone!"
    )
    assert "similar" in check_triplet(same, cfg)
    assert "chars" in check_triplet(Triplet("Q?", t.positive, t.negative), cfg)
    assert "chars" in check_triplet(Triplet(t.instruction, "Yes.", t.negative), cfg)
    assert "refusal" in check_triplet(
        Triplet(t.instruction, "I'm sorry, but I can't help with that request.", t.negative), cfg
    )


# ---------------------------------------------------------------------------------------- templates
def test_builtin_templates_render_and_hash():
    t = load_template("filter", "left")
    msgs = t.render('Tax {target} "the rich"')
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert msgs[-1]["content"] == 'Post: "Tax {target} "the rich""'  # a post's own braces are never expanded
    assert any(m["role"] == "assistant" for m in msgs)  # worked examples
    w_left, w_right = load_template("write", "left"), load_template("write", "right")
    assert "welfare state" in w_left.render("p", "t")[0]["content"]
    assert w_left.sha256 != w_right.sha256 and len(w_left.short_hash) == 12


def test_template_override_per_target_and_errors(tmp_path):
    (tmp_path / "filter.right.txt").write_text("### user\nRight? {post}\n")
    (tmp_path / "target.green.txt").write_text("ecological: degrowth and conservation\n")
    assert load_template("filter", "right", tmp_path).render("x") == [{"role": "user", "content": "Right? x"}]
    assert load_template("filter", "left", tmp_path).source == "builtin:filter.txt"
    g = load_template("write", "green", tmp_path, opposite="right")
    assert "degrowth" in g.render("x", "y")[0]["content"]
    (tmp_path / "write.txt").write_text("# comment\nstray text\n### user\n{post}\n")
    with pytest.raises(PolituneError, match=r"write.txt:2: text before the first section"):
        load_template("write", "left", tmp_path)
    (tmp_path / "write.txt").write_text("### user\nno placeholder\n")
    with pytest.raises(PolituneError, match="must be '### user' and contain"):
        load_template("write", "left", tmp_path)
    with pytest.raises(PolituneError, match="unknown target 'purple'"):
        load_template("filter", "purple", tmp_path, opposite="left")
    with pytest.raises(PolituneError, match="invalid target"):
        load_template("filter", "../etc", tmp_path)


# ------------------------------------------------------------------------------------------- corpora
def test_builtin_corpus_has_labels_and_variety():
    posts = builtin_posts()
    assert len(posts) >= 200 and len({p.id for p in posts}) == len(posts)
    assert len({p.text for p in posts}) == len(posts)
    slants = Counter(p.label["slant"] for p in posts)
    assert slants["left"] >= 60 and slants["right"] >= 60 and slants["none"] >= 40
    irrelevant_topics = {p.label["topic"] for p in posts if not p.label["relevant"]}
    assert {"sport", "recipes", "weather"} <= irrelevant_topics
    assert all(p.label["relevant"] == (p.label["slant"] != "none") for p in posts)
    first20 = Counter(p.label["slant"] for p in posts[:20])
    assert first20["left"] and first20["right"] and first20["none"]  # --limit 20 sees every kind


def test_load_posts_from_files(tmp_path):
    (tmp_path / "p.csv").write_text("body,author\nFirst post,ann\n,bob\nThird post,cy\n")
    c = load_posts(str(tmp_path / "p.csv"), text_column="body")
    assert [(p.id, p.text, p.author) for p in c.posts] == [
        ("row1", "First post", "ann"),
        ("row3", "Third post", "cy"),
    ]
    assert c.skipped_empty == 1
    assert len(load_posts(str(_write_corpus(tmp_path / "p.jsonl")), limit=3).posts) == 3
    with pytest.raises(PolituneError, match="no 'text' column"):
        load_posts(str(tmp_path / "p.csv"))
    (tmp_path / "dup.jsonl").write_text('{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n')
    with pytest.raises(PolituneError, match="row 2: id: duplicate id 'x'"):
        load_posts(str(tmp_path / "dup.jsonl"))
    with pytest.raises(PolituneError, match="unknown built-in corpus"):
        load_posts("builtin:tweets")


def test_filter_metrics_counts():
    def row(rel, kept, slant=None, lab_slant="none"):
        return {
            "label": {"relevant": rel, "slant": lab_slant},
            "kept": kept,
            "relevance": 5 if kept else 1,
            "slant": slant,
        }

    rows = [
        row(True, True, -0.5, "left"),
        row(True, True, 0.5, "left"),
        row(True, False),
        row(False, True),
        row(False, False),
        row(False, False),
    ]
    m = filter_metrics(rows)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["slant_sign_agreement"] == 0.5 and m["slant_n"] == 2
    assert filter_metrics([{"kept": True}]) is None


# ------------------------------------------------------------------------------- pipeline over HTTP
def test_pipeline_end_to_end_over_http(tmp_path, teacher_server):
    url, state = teacher_server
    cfg = _cfg(tmp_path, url, filter={"min_relevance": 5})
    res = run_generate(cfg)
    out = Path(cfg.out)
    kept = {r["post_id"] for r in _read(out, "filter.jsonl") if r["kept"]}
    assert kept == {"a1", "a3", "a5", "a6", "a8"}
    rejects = {r["post_id"]: r for r in _read(out, "rejects.jsonl")}
    assert rejects["a4"]["stage"] == "filter" and "not JSON" in rejects["a4"]["reason"]
    assert rejects["a4"]["attempts"] == 2
    assert rejects["a6"]["stage"] == "write" and "similar" in rejects["a6"]["reason"]
    assert rejects["a6"]["attempts"] == 3
    prefs = _read(out, "preference.jsonl")
    assert [p["id"] for p in prefs] == ["gen-left-a1", "gen-left-a3", "gen-left-a5", "gen-left-a8"]
    p = prefs[0]
    assert p["prompt"].startswith("What should be done about") and "public" in p["chosen"]
    assert "free markets" in p["rejected"]
    prov = p["meta"]["provenance"]
    assert prov["post_id"] == "a1" and prov["teacher"] == "http:rules" and prov["relevance"] == 8
    assert prov["template_filter"] == load_template("filter", "left").short_hash and "seed" in prov
    assert prov["community"] == "test" and p["meta"]["stance"] == "left" and p["meta"]["topic"] == "wage"
    flaky = next(x for x in prefs if x["id"] == "gen-left-a5")
    assert flaky["meta"]["provenance"]["relevance"] == 8  # filter succeeded on its retry
    insts = _read(out, "instruction.jsonl")
    assert [(i["id"], i["response"]) for i in insts] == [(x["id"], x["chosen"]) for x in prefs]
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["counts"]["written"] == 4 and s["counts"]["rejected_filter"] == 1
    assert s["usage"]["prompt_tokens"] > 0 and (out / "config.yaml").is_file()
    assert res.summary["counts"] == s["counts"]

    # the politune.data loader reads what we wrote
    from politune.data import load

    assert [x.id for x in load(str(out / "preference.jsonl"))] == [x["id"] for x in prefs]

    # re-run: every answer comes from the cache, no teacher call, identical files
    before = {n: (out / n).read_bytes() for n in OUTPUTS}
    calls = sum(state.calls.values())
    again = run_generate(cfg)
    assert sum(state.calls.values()) == calls and again.summary["cache"]["entries_added"] == 0
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before


def test_transport_failures_are_not_cached_and_resume(tmp_path, teacher_server):
    url, state = teacher_server
    posts = [("b1", "Raise the minimum wage."), ("b2", "[down] Cut taxes for small firms.")]
    cfg = _cfg(
        tmp_path,
        url,
        corpus=str(_write_corpus(tmp_path / "b.jsonl", posts)),
        api={"base_url": url, "max_retries": 0},
    )
    res = run_generate(cfg)
    assert not res.summary["complete"] and res.summary["counts"]["transport_failed"] == 1
    assert res.summary["transport_failures"][0]["post_id"] == "b2"
    assert "HTTP 500" in res.summary["transport_failures"][0]["error"]
    assert [p.id for p in res.preference] == ["gen-left-b1"]
    assert not any(r["post_id"] == "b2" for r in res.rejects)  # a server failure is not the post's fault
    n = state.calls["[down] Cut taxes for small firms."]
    run_generate(cfg)
    assert state.calls["[down] Cut taxes for small firms."] == n + 1  # asked again, not served from cache


class KeywordScorer:
    """A StanceScorer for the test: 'public' leans left (-0.8), 'markets' right (+0.8)."""

    name = "keyword-test"

    def lean(self, texts, axis, prompts=None):
        return [-0.8 if "public" in t else 0.8 if "markets" in t else None for t in texts]


def test_stance_check(tmp_path, teacher_server):
    url, _ = teacher_server
    posts = [("c1", "Raise the minimum wage.")]
    corpus = str(_write_corpus(tmp_path / "c.jsonl", posts))
    left = run_generate(_cfg(tmp_path, url, corpus=corpus, out=str(tmp_path / "l")), scorer=KeywordScorer())
    prov = left.preference[0].meta["provenance"]
    assert prov["stance_margin"] == pytest.approx(1.6) and prov["stance_scorer"] == "keyword-test"
    # target right with the same (left-leaning) positive answers: every attempt fails the stance check
    right = run_generate(
        _cfg(tmp_path, url, corpus=corpus, out=str(tmp_path / "r"), target="right"), scorer=KeywordScorer()
    )
    assert not right.preference and "stance check failed" in right.rejects[0]["reason"]


def test_builtin_corpus_filter_metrics_over_http(tmp_path, teacher_server):
    url, _ = teacher_server
    cfg = _cfg(tmp_path, url, corpus="builtin:posts", limit=40, write={"attempts": 1})
    res = run_generate(cfg)
    m = res.summary["filter_metrics"]
    rows = res.ratings
    assert m["n"] == 40 and m["tp"] + m["fp"] == sum(r["kept"] for r in rows)
    assert m["tp"] == sum(r["kept"] and r["label"]["relevant"] for r in rows)
    assert 0 < m["precision"] <= 1 and 0 < m["recall"] <= 1
    assert m["precision_ci"][0] <= m["precision"] <= m["precision_ci"][1]


def test_teacher_over_politune_serve(tmp_path, tiny_model_dir):
    """Our own OpenAI-compatible server as the teacher (tiny random model: every answer is malformed)."""
    from politune.serve import start_server

    with start_server(str(tiny_model_dir), served_name="teacher", device="cpu") as url:
        cfg = GenerateConfig.model_validate(
            {
                "corpus": str(_write_corpus(tmp_path / "s.jsonl", POSTS[:3])),
                "teacher": "teacher",
                "out": str(tmp_path / "s"),
                "templates": str(_tiny_templates(tmp_path / "tpl")),
                "api": {"base_url": url, "concurrency": 3, "max_retries": 0},
                "filter": {"max_tokens": 6, "attempts": 2},
                "stance": {"enabled": False},
            }
        )
        res = run_generate(cfg)
    s = res.summary
    assert s["complete"] and s["teacher"] == "http:teacher" and s["counts"]["rejected_filter"] == 3
    assert s["cache"]["entries_added"] == 6 and s["usage"]["completion_tokens"] > 0
    assert all(r["attempts"] == 2 and r["last_output"] is not None for r in res.rejects)


# ------------------------------------------------------------------------------ local tiny teacher
def _tiny_templates(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    (path / "filter.txt").write_text("### user\nJSON {post}\n")
    (path / "write.txt").write_text("### user\nWrite {post}\n")
    return path


def _tiny_args(tmp_path: Path, model_dir: Path, out: Path) -> list[str]:
    posts = [(f"t{i}", f"post number {i} about wages") for i in range(10)]
    return [
        "generate",
        "--corpus",
        str(_write_corpus(tmp_path / "t.jsonl", posts)),
        "--teacher",
        str(model_dir),
        "--templates",
        str(_tiny_templates(tmp_path / "tpl")),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--set",
        "filter.enabled=false",
        "--set",
        "write.max_tokens=12",
        "--set",
        "write.attempts=3",
        "--set",
        "stance.enabled=false",
    ]


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "politune", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _run_in_process(args: list[str]) -> dict:
    """The same CLI command in this process (one torch thread, like the subprocesses): the reference run."""
    import torch
    from typer.testing import CliRunner

    from politune.cli import app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = CliRunner().invoke(app, [*args, "--json"])
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output[-2000:]
    return json.loads(r.stdout)


def _kill_resume(args_for, tmp_path: Path, kill_points: int, seed: int) -> tuple[dict, dict, list[int], dict]:
    """An uninterrupted reference run, then a subprocess run SIGKILLed at ``kill_points`` random points (chosen
    by how many answers its cache holds, plus a random delay), resumed until it completes. Returns both runs'
    output files, the cache size at each kill and the final run's summary."""
    ref = tmp_path / "ref"
    _run_in_process(args_for(ref))
    total = _lines(ref / "cache.jsonl")
    assert total >= kill_points + 6
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(1, total - 4), kill_points))  # >= 5 answers left after each kill point
    run = tmp_path / "killed"
    killed_at = []
    for target in targets:
        p = _cli(args_for(run))
        deadline = time.time() + 60
        while _lines(run / "cache.jsonl") < target and p.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.02))  # land inside the next batch / request, not just after a write
        assert p.poll() is None, "the run finished before its kill point"
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed_at.append(_lines(run / "cache.jsonl"))
    p = _cli([*args_for(run), "--json"])
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    read = lambda d: {n: (d / n).read_text() for n in OUTPUTS}  # noqa: E731
    # exactly once: the cache holds each key once, as many as the uninterrupted run's
    keys = [json.loads(x)["key"] for x in (run / "cache.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == total
    return read(ref), read(run), killed_at, json.loads(stdout)


def test_kill_and_resume_tiny_model(tmp_path, tiny_model_dir):
    ref, run, killed_at, summary = _kill_resume(
        lambda out: _tiny_args(tmp_path, tiny_model_dir, out), tmp_path, 5, seed=1
    )
    assert ref == run  # row for row
    assert len(ref["rejects.jsonl"].splitlines()) == 10  # a random-weight teacher writes no valid triplet
    assert killed_at == sorted(killed_at) and killed_at[-1] < 30
    assert summary["teacher"] == f"local:{tiny_model_dir}" and summary["counts"]["rejected_write"] == 10
    assert summary["cache"]["entries_reused"] == killed_at[-1]  # finished work is not redone


def test_kill_and_resume_over_http(tmp_path, teacher_server):
    url, state = teacher_server
    state.latency = 0.01
    posts = [(f"h{i:02d}", txt) for i, (_, txt) in enumerate(POSTS * 2)]
    corpus = _write_corpus(tmp_path / "h.jsonl", posts)

    def args(out: Path) -> list[str]:
        return [
            "generate",
            "--corpus",
            str(corpus),
            "--teacher",
            "rules",
            "--api-base",
            url,
            "--out",
            str(out),
            "--concurrency",
            "2",
            "--set",
            "stance.enabled=false",
            "--set",
            "filter.min_relevance=5",
        ]

    try:
        ref, run, _, summary = _kill_resume(args, tmp_path, 5, seed=2)
    finally:
        state.latency = 0.0
    assert ref == run
    assert len(ref["preference.jsonl"].splitlines()) == 8 and summary["counts"]["written"] == 8


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_dry_run_and_errors(tmp_path):
    from typer.testing import CliRunner

    from politune.cli import app

    r = CliRunner().invoke(app, ["generate", "--dry-run", "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert [s["post_id"] for s in shown] == ["p001", "p002"]
    assert (
        shown[0]["filter"][-1]["content"].startswith('Post: "') and shown[0]["write"][0]["role"] == "system"
    )
    r = _cli(["generate", "--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    _, err = r.communicate(timeout=60)
    assert r.returncode == 2 and b"error:" in err and b"Traceback" not in err
    assert not (tmp_path / "o" / "preference.jsonl").exists()
    r = _cli(["generate", "--dry-run", "--set", "filter.min_relevance=42"])
    _, err = r.communicate(timeout=60)
    assert r.returncode == 2 and b"filter.min_relevance" in err
