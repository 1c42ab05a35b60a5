"""serve: the OpenAI-compatible server (official openai client, streaming, logprobs, adapters switched per
request, batching), security and limits, the vLLM command line, the CLI, and the comparison page in headless
Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import openai
import pytest
import torch

from cli_helpers import CHROMIUM_FLAGS
from politune.errors import PolituneError
from politune.fsutil import sha256_dir
from politune.serve.limits import Endpoint

CARD = """---
stance: {stance}
base_model: tiny-random
---
# politune adapter: {stance}

Tuned toward the {stance} stance with DPO on the built-in ideology set (test fixture).

## Evaluation

Not evaluated.
"""

CHROMIUM = "/usr/bin/chromium"
PROMPT = [{"role": "user", "content": "Should the minimum wage be raised?"}]


def make_adapter(path: Path, seed: int, stance: str, rank: int = 4, card: bool = True) -> Path:
    """A LoRA adapter for the tiny model whose (random, large) weights clearly change its outputs."""
    from peft import LoraConfig, get_peft_model

    from politune.models.tiny import build_tiny_model

    model, _ = build_tiny_model(seed=0)
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            init_lora_weights=False,
            target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        ),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.5)
    peft_model.save_pretrained(path)
    readme = Path(path) / "README.md"
    if card:
        readme.write_text(CARD.format(stance=stance), encoding="utf-8")
    elif readme.exists():
        readme.unlink()
    return Path(path)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "left": str(make_adapter(root / "left", 1, "left")),
        "right": str(make_adapter(root / "right", 2, "right", rank=12)),
    }


@pytest.fixture(scope="module")
def compass_file(tmp_path_factory) -> Path:
    def model(name, adapter, e, s):
        axis = lambda v: {"score": v, "ci": [v - 1, v + 1], "coverage": 1.0, "n": 8}  # noqa: E731
        return {
            "target": {
                "name": name,
                "model": "tiny",
                "adapter": adapter,
                "adapter_hash": None,
                "system": None,
            },
            "tracks": {"logprob": {"economic": axis(e), "social": axis(s)}},
        }

    path = tmp_path_factory.mktemp("compass") / "compass.json"
    path.write_text(
        json.dumps(
            {
                "kind": "compass",
                "models": [model("base", None, 0.5, 0.2), model("left", "x/left", -4.0, -3.0)],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir, adapters, compass_file):
    from politune.serve import start_server

    with start_server(
        str(tiny_model_dir), adapters, served_name="tiny", compass=compass_file, dtype="float32"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0)


def chat(client, model="tiny", **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=model, messages=kw.pop("messages", PROMPT), **kw)


# ---- the official openai client ---------------------------------------------------------------------------------
def test_models_list_base_and_adapters(client, adapters):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny", "left", "right"}
    left = models["left"].model_extra["politune"]
    assert (
        left["kind"] == "adapter"
        and left["adapter_hash"] == sha256_dir(adapters["left"], "*.safetensors")[:16]
    )
    assert left["card"]["title"] == "politune adapter: left" and "left stance" in left["card"]["summary"]
    assert left["card"]["meta"]["stance"] == "left" and left["lora_rank"] == 4
    assert left["compass"]["economic"] == -4.0 and left["compass"]["track"] == "logprob"
    assert models["tiny"].model_extra["politune"]["compass"]["social"] == 0.2
    assert models["right"].model_extra["politune"]["compass"] is None
    assert client.models.retrieve("left").id == "left"


def test_chat_matches_local_generation_for_base_and_adapters(client, tiny_model_dir, adapters):
    """Greedy answers over HTTP equal politune.models.generate on the same model (+ adapter) loaded locally:
    the manual decode loop, the adapter switching and disable_adapter are right."""
    from politune.models import generate, load_model

    answers = {}
    for name in ("tiny", "left", "right", "tiny"):
        r = chat(client, name, max_tokens=10)
        answers.setdefault(name, r.choices[0].message.content.strip())
        assert (
            answers[name] == r.choices[0].message.content.strip()
        )  # base after adapters: adapter really off
        assert r.model_extra["politune"]["adapter"] == (None if name == "tiny" else name)
    for name, adir in (("tiny", None), ("left", adapters["left"]), ("right", adapters["right"])):
        model, tok = load_model(str(tiny_model_dir), adapter=adir)
        (local,) = generate(model, tok, [PROMPT], max_new_tokens=10)
        assert answers[name] == local, name
    assert len({answers["tiny"], answers["left"], answers["right"]}) == 3


def test_chat_logprobs(client):
    r = chat(client, "left", max_tokens=6, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 6
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert t.logprob == pytest.approx(tops[0])  # greedy: the chosen token is the most likely one
        assert t.bytes == list(t.token.encode())
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_streaming_equals_non_streaming(client):
    full = chat(client, "right", max_tokens=12, logprobs=True)
    stream = chat(
        client, "right", max_tokens=12, logprobs=True, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage, lps, n_content = "", None, None, [], 0
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            n_content += bool(ch.delta.content)
            finish = ch.finish_reason or finish
            if ch.logprobs and ch.logprobs.content:
                lps += [t.logprob for t in ch.logprobs.content]
    assert text == full.choices[0].message.content
    assert n_content > 3  # it streamed: many chunks with text, not one at the end
    assert finish == full.choices[0].finish_reason == "length"
    assert usage.completion_tokens == full.usage.completion_tokens == 12
    assert lps == pytest.approx([t.logprob for t in full.choices[0].logprobs.content])


def test_sampling_seed_n_and_stop(client):
    a = chat(client, "left", temperature=1.0, seed=7, n=3, max_tokens=8)
    b = chat(client, "left", temperature=1.0, seed=7, n=3, max_tokens=8)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert len({c.message.content for c in a.choices}) > 1  # each choice has its own stream of randomness
    greedy = chat(client, "right", max_tokens=12).choices[0].message.content
    stop = greedy[4:6]
    assert len(stop) == 2
    cut = chat(client, "right", max_tokens=12, stop=["never-there", stop])
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].message.content
    assert greedy.startswith(cut.choices[0].message.content)


def test_completions_echo_logprobs_score_the_prompt(client, tiny_model_dir, adapters):
    """completions with echo + logprobs + max_tokens 0 returns the prompt's own log-probs (loglikelihood
    scoring over HTTP), equal to a direct forward pass with the adapter."""
    from politune.models import load_model

    prompt = "Lower taxes let families keep what they earn."
    r = client.completions.create(model="left", prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == prompt and "".join(lp.tokens) == prompt
    assert lp.token_logprobs[0] is None and lp.text_offset[0] == 0
    model, tok = load_model(str(tiny_model_dir), adapter=adapters["left"], dtype="float32")
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])[:, 0]
    assert lp.token_logprobs[1:] == pytest.approx(want.tolist(), abs=1e-4)
    many = client.completions.create(model="tiny", prompt=["One", "Two words"], max_tokens=3, temperature=0)
    assert [c.index for c in many.choices] == [0, 1] and many.usage.completion_tokens == 6
    chunks = list(
        client.completions.create(model="tiny", prompt="One", max_tokens=3, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == many.choices[0].text


def test_project_chat_client_gets_logprobs_from_each_adapter(server, client):
    """politune.client.ChatClient (judges, teachers, the compass HTTP backend) against this server."""
    from politune.client import ChatClient, ClientOptions

    for name in ("tiny", "left"):
        cc = ChatClient(server, name, options=ClientOptions(concurrency=4, max_retries=0))
        res = cc.chat_many_sync(
            [PROMPT, [{"role": "user", "content": "Hi"}]],
            max_tokens=1,
            temperature=0,
            logprobs=True,
            top_logprobs=20,
        )
        assert all(r.ok for r in res)
        assert len(res[0].logprobs) == 1 and len(res[0].logprobs[0]["top_logprobs"]) == 20
        want = chat(client, name, max_tokens=1, logprobs=True, top_logprobs=20).choices[0].logprobs.content[0]
        assert res[0].logprobs[0]["logprob"] == pytest.approx(want.logprob)
        assert res[0].usage.completion_tokens == 1


def test_client_disconnect_stops_generation(server):
    """A streaming client that goes away has its sequence dropped: the server does not decode 1000 tokens."""
    health = server.removesuffix("/v1") + "/health"
    before = httpx.get(health).json()["stats"]["generated_tokens"]
    body = {"model": "left", "messages": PROMPT, "max_tokens": 1000, "stream": True, "temperature": 0}
    chunks = 0
    with (
        httpx.Client(base_url=server, timeout=30) as h,
        h.stream("POST", "/chat/completions", json=body) as r,
    ):
        for line in r.iter_lines():
            chunks += line.startswith("data: ")
            if chunks >= 4:
                break
    # the next request is answered only after the abandoned one left the worker
    assert (
        httpx.post(server + "/chat/completions", json={**body, "stream": False, "max_tokens": 2}).status_code
        == 200
    )
    generated = httpx.get(health).json()["stats"]["generated_tokens"] - before
    assert chunks >= 4 and generated < 500


def test_concurrent_requests_of_different_adapters_share_forward_passes_and_stay_correct(server, client):
    """Requests sent together join one running batch whose forward passes mix base and adapter rows; answers
    equal the one-at-a-time ones."""
    prompts = [[{"role": "user", "content": "Hi" + "!" * k}] for k in range(6)]
    models = ["tiny", "left", "right"]
    alone = {
        (m, k): chat(client, m, messages=p).choices[0].message.content
        for m in models
        for k, p in enumerate(prompts)
    }

    async def together():
        async with openai.AsyncOpenAI(base_url=server, api_key="x", max_retries=0) as ac:
            coros = [
                ac.chat.completions.create(model=m, messages=p, max_tokens=8, temperature=0)
                for k, p in enumerate(prompts)
                for m in models
            ]
            return await asyncio.gather(*coros)

    before = httpx.get(server.removesuffix("/v1") + "/health").json()["stats"]
    out = asyncio.run(together())
    after = httpx.get(server.removesuffix("/v1") + "/health").json()["stats"]
    got = {
        (m, k): out[k * len(models) + i].choices[0].message.content
        for k in range(len(prompts))
        for i, m in enumerate(models)
    }
    assert got == alone
    assert after["sequences"] - before["sequences"] == 18
    assert after["mixed_steps"] > before["mixed_steps"]  # rows of different models in one forward pass
    assert after["max_batch_rows"] > 1


# ---- the engine, white-box: no worker thread, the test drives the scheduler ---------------------------------------
def _outcome(events: list[tuple]) -> tuple[str, list[float], list[tuple], list[str]]:
    """(text, sampled-token log-probs, [(finish reason, tokens)], other event kinds) of one job's events."""
    text = "".join(e[2] for e in events if e[0] == "delta")
    lps = [t.logprob for e in events if e[0] == "delta" and e[3] for t in e[3]]
    done = [(e[2], e[3]) for e in events if e[0] == "done"]
    return text, lps, done, [e[0] for e in events if e[0] not in ("delta", "done")]


def _drive(eng, specs, arrive=None, cancel=None):
    """Submit ``specs`` ((adapter, prompt, params)) to a worker-less continuous engine, job k at step
    ``arrive[k]`` (default 0), cancel job k at step ``cancel[k]``; step until idle. Returns the outcomes."""
    from politune.serve.engine import Job

    events: list[list[tuple]] = [[] for _ in specs]
    jobs = [Job(a, eng.encode_text(text), p, events[k].append) for k, (a, text, p) in enumerate(specs)]
    arrive, cancel = arrive or {}, cancel or {}
    step, busy = 0, True
    while busy or any(arrive.get(k, 0) >= step for k in range(len(jobs))):
        for k, job in enumerate(jobs):
            if arrive.get(k, 0) == step:
                eng.submit(job)
            if cancel.get(k) == step:
                job.cancelled = True
        busy = eng.batcher.step()
        step += 1
    return [_outcome(evs) for evs in events]


def _assert_same(got, want) -> None:
    for g, w in zip(got, want, strict=True):
        assert g[0] == w[0] and g[2] == w[2] and g[3] == w[3]
        assert g[1] == pytest.approx(
            w[1], abs=2e-3
        )  # summation order differs with batch shape; a misaligned row is off by ~1


@pytest.fixture(scope="module")
def mixed_engine(tiny_model_dir, adapters):
    from politune.serve.engine import Engine

    # fp32: exact equality of batched and lone rows is a property of the scheduler; in bf16 a row's rounding
    # depends on what it is batched with (as in any batched bf16 engine)
    return Engine(str(tiny_model_dir), adapters, dtype="float32", start=False)


def test_mixed_adapter_rows_in_one_forward_equal_each_adapter_alone(mixed_engine):
    """Base, left and right rows prefilled and decoded in the same forward passes (PEFT adapter_names) give the
    tokens and log-probs each gives alone, greedy and seeded."""
    from politune.serve.engine import SamplingParams

    eng = mixed_engine
    greedy = SamplingParams(max_tokens=7, temperature=0, logprobs=True)
    specs = [
        (None, "Lower taxes", greedy),
        ("left", "Free speech protects unpopular opinions", greedy),
        ("right", "Markets", SamplingParams(max_tokens=7, temperature=0.9, seed=5, n=2, logprobs=True)),
        ("left", "Unions", greedy),
    ]
    before = dict(eng.stats)
    together = _drive(eng, specs)
    assert eng.stats["batches"] - before["batches"] == 1  # all five rows prefilled in one forward pass
    assert eng.stats["mixed_steps"] > before["mixed_steps"]
    alone = [_drive(eng, [spec])[0] for spec in specs]
    _assert_same(together, alone)
    assert len({t[0] for t in together[:3]}) == 3  # the adapters really differ
    assert all(t[3] == ["end"] for t in together)


def test_requests_join_mid_decode_and_cancelled_rows_leave(mixed_engine):
    """A request arriving while others decode is prefilled and merged into the running batch (its prompt both
    wider and narrower than the running KV cache); a cancelled row leaves at the next step; every remaining
    row's tokens equal its tokens alone."""
    from politune.serve.engine import SamplingParams

    eng = mixed_engine
    g = lambda n: SamplingParams(max_tokens=n, temperature=0, logprobs=True)  # noqa: E731
    specs = [
        ("left", "Rent control", g(12)),
        (None, "Should the minimum wage be raised for every worker in the country", g(4)),
        ("right", "Tax", SamplingParams(max_tokens=10, temperature=1.0, seed=11)),
        ("right", "Healthcare", g(30)),
    ]
    before = dict(eng.stats)
    together = _drive(eng, specs, arrive={1: 3, 2: 5, 3: 1}, cancel={3: 6})
    assert eng.stats["joins"] - before["joins"] == 3
    alone = [_drive(eng, [spec])[0] for spec in specs]
    _assert_same(together[:3], alone[:3])
    cancelled = together[3]
    assert cancelled[2] == [] and cancelled[3] == ["end"]  # no "done": it left without finishing
    assert alone[3][0].startswith(cancelled[0]) and len(cancelled[1]) == 5  # tokens at steps 1-5, then gone
    assert eng.batcher.rows is None


def test_shared_prompt_prefix_is_encoded_once_per_model_and_changes_nothing(mixed_engine, monkeypatch):
    """Prompts that start alike (a system prompt) are prefilled on a stored copy of that start's KV cache, one
    per model (base and each adapter: their keys and values differ); a later lone request with the same start
    reuses it, and lone requests find the start they share with earlier ones. Tokens and log-probs equal those of
    prefilling every prompt whole."""
    from politune.serve.engine import SamplingParams
    from politune.serve.prefix import PrefixStore

    eng = mixed_engine
    eng.batcher.prefixes = PrefixStore()
    system = "You are a careful assistant. Answer in one short sentence, and stay civil.\n"
    g = SamplingParams(max_tokens=6, temperature=0, logprobs=True)
    specs = [
        (None, system + "Lower taxes?", g),
        ("left", system + "Free speech?", g),
        ("right", system + "Markets?", SamplingParams(max_tokens=6, temperature=0.9, seed=3, logprobs=True)),
        ("left", system + "Unions?", g),
    ]
    lone = ("right", system + "Rent control?", g)
    before = dict(eng.stats)
    together, later = _drive(eng, specs), _drive(eng, [lone])
    n_system = len(eng.encode_text(system))
    assert eng.stats["prefix_rows"] - before["prefix_rows"] == 5
    assert eng.stats["prefix_tokens"] - before["prefix_tokens"] >= 5 * (n_system - 1)
    assert {name for name, _ in eng.batcher.prefixes.entries} == {"__base__", "left", "right"}

    # requests arriving one at a time: the second finds the start it shares with the first, encodes and stores it
    eng.batcher.prefixes = PrefixStore()
    before = dict(eng.stats)
    one_by_one = [_drive(eng, [spec])[0] for spec in specs[:3]]
    assert eng.stats["prefix_rows"] - before["prefix_rows"] == 2
    assert {name for name, _ in eng.batcher.prefixes.entries} == {"left", "right"}

    monkeypatch.setattr(PrefixStore, "plan", lambda self, eng, prompts, names: (0, []))  # every prompt whole
    whole, whole_later = _drive(eng, specs), _drive(eng, [lone])
    _assert_same(together + later, whole + whole_later)
    _assert_same(one_by_one, [_drive(eng, [spec])[0] for spec in specs[:3]])
    assert len({t[0] for t in together}) > 1 and all(t[3] == ["end"] for t in together)


def test_a_failing_prefill_fails_only_the_newcomers(mixed_engine, monkeypatch):
    """A request whose prefill raises gets an error; the rows already running finish as if alone."""
    from politune.serve.engine import SamplingParams

    eng = mixed_engine
    real = eng.forward

    def flaky(ids, mask, pos, cache, names, logits_to_keep=1):
        if cache is None and names == ["right"]:
            raise RuntimeError("boom")
        return real(ids, mask, pos, cache, names, logits_to_keep)

    monkeypatch.setattr(eng, "forward", flaky)
    g = SamplingParams(max_tokens=6, temperature=0)
    got = _drive(eng, [("left", "Rent", g), ("right", "Tax", g)], arrive={1: 2})
    assert got[1][3] == ["error"] and got[1][0] == ""
    monkeypatch.undo()
    assert got[0] == _drive(eng, [("left", "Rent", g)])[0] and got[0][3] == ["end"]


def test_kv_cache_merge_pads_and_trims(mixed_engine):
    """White-box: merging left-pads the narrower cache and mask; once the wide row leaves, the unused columns
    are cut, so the cache is as wide as the longest live row."""
    from politune.serve.engine import Job, SamplingParams

    eng = mixed_engine
    long_prompt = eng.encode_text("A long prompt about unions, wages, rent, taxes and trade policy")
    jobs = [
        Job("left", eng.encode_text("Hi"), SamplingParams(max_tokens=20, temperature=0), lambda e: None),
        Job(None, long_prompt, SamplingParams(max_tokens=2, temperature=0), lambda e: None),
    ]
    eng.submit(jobs[0])
    eng.batcher.step()  # prefill "Hi", its first token, one forward
    eng.submit(jobs[1])
    eng.batcher.step()  # the long prompt joins: merged, both sample, one forward
    rows = eng.batcher.rows
    width = len(long_prompt) + 1
    assert rows.mask.shape == (2, width) and rows.names == ["left", "__base__"]
    assert rows.mask.sum(1).tolist() == [len(jobs[0].prompt_ids) + 2, len(long_prompt) + 1]
    assert all(layer.keys.shape[:3] == (2, layer.keys.shape[1], width) for layer in rows.cache.layers)
    eng.batcher.step()  # the long row samples its 2nd (last) token and leaves
    rows = eng.batcher.rows
    live = int(rows.mask.sum(1).max())
    assert len(rows.seqs) == 1 and rows.mask.shape[1] == live == len(jobs[0].prompt_ids) + 3
    assert all(layer.keys.shape[2] == live for layer in rows.cache.layers)
    jobs[0].cancelled = True
    eng.batcher.step()
    assert eng.batcher.rows is None


def test_admission_is_fifo_and_bounded():
    """Continuous admission: oldest first, up to max_batch_rows next to the running rows, never skipping the
    oldest (no starvation of a large n); cancelled requests are dropped. An unknown scheduler is one line."""
    from politune.serve.engine import Batching, Engine, Job, SamplingParams

    eng = Engine("tiny-random", None, batching=Batching(max_batch_rows=4), start=False)
    jobs = [Job(None, [1, 2], SamplingParams(n=n), lambda e: None) for n in (1, 2, 3, 1, 1, 6)]
    jobs[3].cancelled = True
    for job in jobs:
        eng.submit(job)
    assert eng.admit(0) == jobs[:2]  # 1 + 2 rows; the next (3) would make 6 > 4
    assert eng.admit(3) == []
    assert eng.admit(1) == [jobs[2]]
    assert eng.admit(0) == [jobs[4]]  # the cancelled one is skipped; 6 rows would not fit next to 1
    assert eng.admit(1) == [] and eng.admit(0) == [jobs[5]]  # an empty batch takes any request
    with pytest.raises(PolituneError, match="scheduler 'fast'"):
        Batching("fast")


def test_static_scheduler_batches_only_same_adapter():
    """White-box, the previous engine (scheduler="static"): jobs queued together are grouped by adapter,
    oldest first, up to max_batch_rows."""
    from politune.serve import static
    from politune.serve.engine import Batching, Engine, Job, SamplingParams

    eng = Engine("tiny-random", None, batching=Batching("static", max_batch_rows=4), start=False)
    jobs = [
        Job(a, [1, 2], SamplingParams(n=n), lambda e: None)
        for a, n in [("a", 1), ("b", 1), ("a", 2), (None, 1), ("a", 2), ("b", 3)]
    ]
    for job in jobs:
        eng.submit(job)
    # a: 1 + 2 rows (the next a, 2 more rows, would make 5 > 4)
    assert static.take_batch(eng) == [jobs[0], jobs[2]]
    assert static.take_batch(eng) == [jobs[1], jobs[5]]
    assert static.take_batch(eng) == [jobs[3]]
    assert static.take_batch(eng) == [jobs[4]]


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_rows_leaving_the_batch_early_do_not_change_the_others(scheduler):
    """Sequences that finish early (short max_tokens, a stop string) are dropped from the batch and its KV cache;
    the sequences still running give the same tokens and log-probs as when decoded alone, with both schedulers."""
    from politune.serve import static
    from politune.serve.engine import Batching, Engine, Job, SamplingParams

    eng = Engine("tiny-random", None, batching=Batching(scheduler), start=False)

    def run(specs):
        if scheduler == "continuous":
            return _drive(eng, [(None, text, params) for text, params in specs])
        events = [[] for _ in specs]
        jobs = [
            Job(None, eng.encode_text(text), params, events[k].append)
            for k, (text, params) in enumerate(specs)
        ]
        static.decode(eng, jobs)
        return [_outcome(evs) for evs in events]

    specs = [
        ("Lower taxes", SamplingParams(max_tokens=2, temperature=0, logprobs=True)),
        (
            "Free speech protects unpopular opinions",
            SamplingParams(max_tokens=9, temperature=0, logprobs=True),
        ),
        ("Markets", SamplingParams(max_tokens=9, temperature=0.8, seed=3, n=2, logprobs=True)),
        ("Unions", SamplingParams(max_tokens=0, echo_logprobs=True)),
    ]
    together = run(specs)
    alone = [run([spec])[0] for spec in specs]
    _assert_same(together, alone)
    assert together[0][2] == [("length", 2)] and together[1][2] == [("length", 9)]
    assert together[3][2] == [("length", 0)]
    assert eng.stats["max_batch_rows"] == 5


@pytest.mark.slow
def test_smollm2_over_http_matches_local_generation(smollm2_dir):
    """The real default model: the server's greedy answer equals politune.models.generate, and it is text."""
    from politune.models import generate, load_model
    from politune.serve import start_server

    question = [{"role": "user", "content": "What is the capital of France?"}]
    model, tok = load_model(str(smollm2_dir))
    (local,) = generate(model, tok, [question], max_new_tokens=8)
    del model
    with start_server(str(smollm2_dir), served_name="smollm2-135m") as url:
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        r = c.chat.completions.create(
            model="smollm2-135m",
            messages=question,
            max_tokens=8,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
        )
    assert r.choices[0].message.content.strip() == local and "Paris" in local
    assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens


# ---- security, limits and errors ----------------------------------------------------------------------------------
def _err(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return body


def test_bad_requests_get_the_right_4xx_and_the_server_stays_healthy(server):
    ok = {"model": "tiny", "messages": PROMPT, "max_tokens": 4}
    with httpx.Client(base_url=server, timeout=30) as h:
        _err(
            h.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"}),
            400,
        )
        _err(h.post("/chat/completions", content=b"[1, 2]"), 400)
        assert (
            _err(h.post("/chat/completions", json={**ok, "model": "nope"}), 404)["code"] == "model_not_found"
        )
        assert _err(h.post("/chat/completions", json={**ok, "model": "../../etc"}), 404)["param"] == "model"
        assert _err(h.post("/completions", json={"model": "../../etc/passwd", "prompt": "x"}), 404)
        _err(h.get("/models/..%2F..%2Fetc"), 404)
        assert (
            _err(h.post("/chat/completions", json={**ok, "max_tokens": 10**9}), 400)["param"] == "max_tokens"
        )
        assert _err(h.post("/chat/completions", json={**ok, "n": 1000}), 400)["param"] == "n"
        assert (
            _err(h.post("/chat/completions", json={**ok, "temperature": -1}), 400)["param"] == "temperature"
        )
        _err(h.post("/chat/completions", json={**ok, "messages": []}), 400)
        _err(h.post("/chat/completions", json={**ok, "messages": [{"role": "wizard", "content": "x"}]}), 400)
        _err(h.post("/chat/completions", json={**ok, "top_logprobs": 50, "logprobs": True}), 400)
        _err(
            h.post("/chat/completions", json={**ok, "messages": [{"role": "user", "content": "x " * 5000}]}),
            400,
        )
        _err(h.post("/completions", json={"model": "tiny", "prompt": "x", "logprobs": 9}), 400)
        _err(h.post("/chat/completions", json={**ok, "tools": [{"type": "function"}]}), 400)
        _err(h.post("/chat/completions", json={**ok, "frequency_penalty": 1.0}), 400)
        _err(h.post("/chat/completions", json={**ok, "response_format": {"type": "json_schema"}}), 400)
        big = b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"a" * 10_000_000 + b'"}]}'
        assert _err(h.post("/chat/completions", content=big), 413)["code"] == "request_too_large"

        def chunked():
            yield b'{"model": "tiny", "prompt": "'
            for _ in range(40):
                yield b"a" * 65536
            yield b'"}'

        _err(h.post("/completions", content=chunked()), 413)  # no Content-Length: counted while reading
        _err(h.get("/nothing-here"), 404)
        _err(h.get("/chat/completions"), 405)
        assert h.get(server.removesuffix("/v1") + "/health").json()["status"] == "ok"
        r = h.post("/chat/completions", json=ok)
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"


def test_api_key_and_queue_limit(tiny_model_dir):
    from politune.serve import ServeLimits, start_server

    with start_server(
        str(tiny_model_dir), endpoint=Endpoint(port=0, api_key="s3cret"), limits=ServeLimits(max_queue=2)
    ) as url:
        ok = {"model": "base", "messages": PROMPT, "max_tokens": 2}
        with httpx.Client(base_url=url, timeout=30) as h:
            assert _err(h.get("/models"), 401)["type"] == "authentication_error"
            _err(h.post("/chat/completions", json=ok), 401)
            _err(h.post("/chat/completions", json=ok, headers={"Authorization": "Bearer wrong"}), 401)
            _err(h.post("/chat/completions", json=ok, headers={"Authorization": "s3cret"}), 401)
            assert h.get(url.removesuffix("/v1") + "/").status_code == 200  # static page; it asks for the key
        c = openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0)
        assert [m.id for m in c.models.list()] == [Path(tiny_model_dir).name]
        eng_url = url

        async def flood():
            async with httpx.AsyncClient(
                base_url=eng_url, timeout=60, headers={"Authorization": "Bearer s3cret"}
            ) as ac:
                return await asyncio.gather(
                    *[ac.post("/chat/completions", json={**ok, "max_tokens": 64}) for _ in range(12)]
                )

        codes = [r.status_code for r in asyncio.run(flood())]
        assert set(codes) <= {200, 429} and 429 in codes and 200 in codes
        r429 = next(r for r in asyncio.run(flood()) if r.status_code == 429)
        assert r429.headers["retry-after"] == "1" and r429.json()["error"]["code"] == "queue_full"
        assert (
            c.chat.completions.create(model="base", messages=PROMPT, max_tokens=2).choices[0].message.content
        )


def test_bind_rules_and_bad_adapters(tiny_model_dir, tmp_path):
    from politune.serve import create_app, start_server
    from politune.serve.server import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(PolituneError, match="api-key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "k")
    with (
        pytest.raises(PolituneError, match="api-key"),
        start_server("tiny-random", endpoint=Endpoint("0.0.0.0", 0)),
    ):
        pass
    with pytest.raises(PolituneError, match="invalid adapter name"):
        create_app(str(tiny_model_dir), {"../../etc": str(tmp_path)})
    with pytest.raises(PolituneError, match="reserved"):
        create_app(str(tiny_model_dir), {"base": str(tmp_path)})
    with pytest.raises(PolituneError, match="not found"):
        create_app(str(tiny_model_dir), {"x": str(tmp_path / "missing")})
    with pytest.raises(PolituneError, match="adapter_config.json"):
        create_app(str(tiny_model_dir), {"x": str(tmp_path)})
    from peft import LoraConfig, get_peft_model

    from politune.models.tiny import build_tiny_model

    wider, _ = build_tiny_model(hidden_size=64)  # an adapter made for another base model
    get_peft_model(wider, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "wider")
    with pytest.raises(PolituneError, match="cannot be attached"):
        create_app(str(tiny_model_dir), {"wider": str(tmp_path / "wider")})
    bad = tmp_path / "compass.json"
    bad.write_text('{"kind": "topics"}')
    with pytest.raises(PolituneError, match="expected a compass.json"):
        create_app(str(tiny_model_dir), compass=bad)


def test_model_card_summary(tmp_path):
    from politune.serve import read_model_card

    assert read_model_card(tmp_path)["missing"] is True
    (tmp_path / "README.md").write_text(
        "# Title\n\nFirst para\nwraps.\n\n## More\n\nSecond.\n\n" + "x" * 2000
    )
    card = read_model_card(tmp_path)
    assert card["title"] == "Title" and card["summary"].startswith("First para wraps. Second.")
    assert len(card["summary"]) <= 600 and card["meta"] == {}


# ---- vLLM command line ------------------------------------------------------------------------------------------
def test_vllm_command_line(tiny_model_dir, adapters):
    from politune.serve.vllm import lora_rank_for_vllm, vllm_command

    cmd = vllm_command(str(tiny_model_dir), adapters, Endpoint(port=9000, api_key="k"), served_name="tiny")
    argv = cmd.argv
    assert argv[:3] == ["vllm", "serve", str(Path(tiny_model_dir).resolve())]
    assert argv[argv.index("--served-model-name") + 1] == "tiny"
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "9000"
    assert "--enable-lora" in argv
    i = argv.index("--lora-modules")
    assert argv[i + 1 : i + 3] == [
        f"left={Path(adapters['left']).resolve()}",
        f"right={Path(adapters['right']).resolve()}",
    ]
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"  # largest rank 12, rounded up to a vLLM value
    assert "k" not in argv and cmd.env == {"VLLM_API_KEY": "k"}
    assert cmd.shell().startswith("VLLM_API_KEY=$VLLM_API_KEY vllm serve ")
    hub = vllm_command("mistral-7b").argv
    assert hub[2] == "mistralai/Mistral-7B-Instruct-v0.2" and "--enable-lora" not in hub
    assert [lora_rank_for_vllm(r) for r in (1, 2, 8, 9, 64, 300)] == [1, 8, 8, 16, 64, 320]
    with pytest.raises(PolituneError):
        lora_rank_for_vllm(1024)


def test_cli_vllm_dry_run(adapters, monkeypatch, capsys):
    from politune.cli import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "politune",
            "serve",
            "--backend",
            "vllm",
            "--dry-run",
            "-m",
            "mistral-7b",
            "--adapter",
            f"left={adapters['left']}",
            "--vllm-arg=--enforce-eager",
        ],
    )
    main()
    out = capsys.readouterr().out
    assert "vllm serve mistralai/Mistral-7B-Instruct-v0.2" in out and "--lora-modules left=" in out
    assert out.rstrip().endswith("--enforce-eager")


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--adapter", "../x=DIR"], "invalid adapter name"),
        (["--adapter", "base=DIR"], "reserved"),
        (["--adapter", "left=MISSING"], "directory not found"),
        (["--host", "0.0.0.0"], "needs --api-key"),
        (["--backend", "tgi"], "expected hf or vllm"),
        (["--scheduler", "fast"], "expected continuous or static"),
        (["--max-tokens", "0"], "positive integer"),
        (["--compass", "MISSING"], "cannot read"),
    ],
)
def test_cli_errors_are_one_line(args, msg, adapters, tmp_path, monkeypatch, capsys):
    from politune.cli import main

    args = [a.replace("MISSING", str(tmp_path / "nope")).replace("DIR", adapters["left"]) for a in args]
    monkeypatch.setattr(sys, "argv", ["politune", "serve", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and msg in err and "Traceback" not in err, err


def test_cli_serve_in_the_foreground_stops_on_sigterm():
    """`politune serve`: announces its URL once it listens, answers there, and exits 0 on SIGTERM."""
    import re
    import signal
    import subprocess

    cmd = [sys.executable, "-m", "politune", "serve", "--model", "tiny-random", "--port", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        said = ""
        while not (m := re.search(r"at (http://127\.0\.0\.1:\d+)/v1", said)):
            line = proc.stderr.readline()
            assert line, f"politune serve exited before listening: {said}"
            said += line
        models = httpx.get(m.group(1) + "/v1/models", timeout=30).json()
        assert [x["id"] for x in models["data"]] == ["tiny-random"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# ---- the comparison page in headless Chromium -------------------------------------------------------------------
@pytest.mark.browser
def test_comparison_page_in_chromium(server, client):
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
        pytest.skip(
            f"Chromium not installed at {CHROMIUM} (`make browser` installs it with apt where it can)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
    question = "Should rent be controlled?"
    expected = {
        m: chat(client, m, messages=[{"role": "user", "content": question}], max_tokens=16)
        .choices[0]
        .message.content
        for m in ("tiny", "left", "right")
    }
    page_url = server.removesuffix("/v1") + "/"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
        )
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(page_url) else None)
            page.goto(page_url)
            page.wait_for_selector(".col[data-model='right']")
            assert page.locator(".col").count() == 3
            left = page.locator(".col[data-model='left']")
            assert "left stance" in left.locator(".card").inner_text()
            assert "economic -4.00" in left.locator(".compass").inner_text()
            assert page.locator(".col[data-model='right'] .compass").count() == 0
            page.fill("#question", question)
            page.fill("#max_tokens", "16")
            page.click("#go")
            for model in expected:  # selectors, not JS: the page's CSP forbids eval
                sel = f".col[data-model='{model}']"
                page.locator(f"{sel}[data-state='done'], {sel}[data-state='error']").wait_for(timeout=30_000)
            for model, want in expected.items():
                col = page.locator(f".col[data-model='{model}']")
                assert col.get_attribute("data-state") == "done", col.locator(".status").inner_text()
                assert col.locator(".answer").text_content() == want
                assert "16 tokens" in col.locator(".status").inner_text()
            assert not errors and not outside
        finally:
            browser.close()


def test_serve_package_exports_each_name_from_the_module_that_defines_it():
    """politune.serve imports its names on first use: every exported name has a home, and nothing else."""
    import politune.serve as serve_pkg

    assert set(serve_pkg.__all__) == set(serve_pkg._WHERE)
    for name in serve_pkg.__all__:
        assert getattr(serve_pkg, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        serve_pkg.nope  # noqa: B018
