"""Load test of ``politune serve``: N concurrent chat requests across the base model and its adapters, against
the previous engine (``--scheduler static``: one same-adapter batch decoded to completion at a time) and the
current one (``continuous``: requests join and leave the batch at every step, adapters mixed in one forward pass),
both in the same run.

Loopback only and bounded: the script starts one server per scheduler itself on 127.0.0.1 (free ports) in this
process, sends ``--requests`` chat requests at once (or spread evenly over ``--stagger`` seconds), round-robin
over base + adapters, ``--max-tokens`` each (temperature 0.7, a seed each), and checks that every one succeeds
with no 5xx and is answered by the adapter it
named. It repeats the round ``--rounds`` times per scheduler, interleaved (static, continuous, static, ...) so
that load from other processes hits both alike, and reads the process RSS after each pair of rounds: memory is
"flat" when the later rounds grow RSS by less than ``--flat-mb``. Ratios (continuous / static) compare the
medians over the rounds after the first (the first warms caches up), or over all rounds when there is one.

Optional peer (``--peer-requests``, default 0): transformers' own ``model.generate`` on the same base model +
PEFT adapters, one request at a time in-process (no HTTP); ratio = output tokens per second, server / peer.

Usage::

    python bench/serve_load.py                       # smollm2-135m, 2 adapters, 100 requests x 3 rounds each
    python bench/serve_load.py --model tiny-random   # seconds, for a smoke run

Prints a table and one JSON line (``--json FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = [
    "Should the minimum wage be raised?",
    "Is rent control a good idea?",
    "Should taxes on large estates go up or down?",
    "What role should unions play in the economy?",
    "Should the state run healthcare?",
    "Is free trade good for workers?",
    "Should police powers be expanded?",
    "How should immigration be managed?",
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_adapters(model_name: str, root: Path, n: int) -> dict[str, str]:
    """``n`` random LoRA adapters (rank 8 on q/v) for ``model_name``: real PEFT folders, random weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    from politune.models import load_model

    out = {}
    for k in range(n):
        model, _ = load_model(model_name, device="cpu")
        torch.manual_seed(100 + k)
        pm = get_peft_model(
            model,
            LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        )
        name = ["left", "right", "center", "green"][k % 4] + ("" if k < 4 else str(k))
        pm.save_pretrained(root / name)
        (root / name / "README.md").write_text(
            f"# bench adapter {name}\n\nRandom LoRA weights for the load test.\n"
        )
        out[name] = str(root / name)
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def request_lengths(requests: int, lo: int, hi: int) -> list[int]:
    """max_tokens of each request: all ``hi`` when ``lo == hi``, else log-uniform in [lo, hi] (seeded, so the
    same list for both schedulers and every run): many short answers, a few long ones, like answers that end
    at EOS (random adapters never do)."""
    import math
    import random

    if lo >= hi:
        return [hi] * requests
    rng = random.Random(0)
    return [round(math.exp(rng.uniform(math.log(lo), math.log(hi)))) for _ in range(requests)]


async def one_round(
    url: str, models: list[str], lengths: list[int], timeout: float, stagger: float = 0.0
) -> dict:
    import httpx

    requests = len(lengths)
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def call(i: int):
            await asyncio.sleep(i * stagger / requests)  # 0: all at once
            body = {
                "model": models[i % len(models)],
                "max_tokens": lengths[i],
                "temperature": 0.7,
                "seed": i,
                "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            }
            t = time.perf_counter()
            try:
                r = await client.post("/chat/completions", json=body)
            except httpx.HTTPError as e:
                return {"status": None, "error": type(e).__name__, "latency": time.perf_counter() - t}
            res = {"status": r.status_code, "latency": time.perf_counter() - t}
            if r.status_code == 200:
                data = r.json()
                res["tokens"] = data["usage"]["completion_tokens"]
                res["adapter"] = data["politune"]["adapter"]
            return res

        t0 = time.perf_counter()
        results = await asyncio.gather(*[call(i) for i in range(requests)])
        wall = time.perf_counter() - t0
    lat = [r["latency"] for r in results]
    ok = [r for r in results if r["status"] == 200]
    return {
        "requests": requests,
        "ok": len(ok),
        "status_5xx": sum(1 for r in results if (r["status"] or 0) >= 500),
        "errors": sum(1 for r in results if r["status"] != 200),
        "wall_s": wall,
        "tokens": sum(r["tokens"] for r in ok),
        "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
        "p50_s": percentile(lat, 0.5),
        "p95_s": percentile(lat, 0.95),
        "max_s": max(lat),
        "wrong_adapter": sum(
            1
            for i, r in enumerate(results)
            if r["status"] == 200
            and (r["adapter"] or "base") != (models[i % len(models)] if i % len(models) else "base")
        ),
    }


def peer(model_name: str, adapters: dict[str, str], requests: int, max_tokens: int) -> dict:
    """transformers generate, one request at a time, adapters switched with PEFT (no HTTP, no batching)."""
    import torch
    from peft import PeftModel

    from politune.models import format_chat, load_model

    base, tok = load_model(model_name)
    names = list(adapters)
    model = PeftModel.from_pretrained(base, adapters[names[0]], adapter_name=names[0])
    for n in names[1:]:
        model.load_adapter(adapters[n], adapter_name=n)
    model.eval()
    models = [None, *names]
    with torch.inference_mode():  # warm-up, untimed (the server's first round is its warm-up)
        model.generate(**tok("Hi", return_tensors="pt"), max_new_tokens=2, pad_token_id=tok.pad_token_id)
    tokens, t0 = 0, time.perf_counter()
    for i in range(requests):
        which = models[i % len(models)]
        text = format_chat(tok, QUESTIONS[i % len(QUESTIONS)])
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        torch.manual_seed(i)
        kw = dict(
            max_new_tokens=max_tokens,
            do_sample=True,
            temperature=0.7,
            top_p=1.0,
            top_k=None,
            pad_token_id=tok.pad_token_id,
        )
        with torch.inference_mode():
            if which is None:
                with model.disable_adapter():
                    out = model.generate(**enc, **kw)
            else:
                model.set_adapter(which)
                out = model.generate(**enc, **kw)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    wall = time.perf_counter() - t0
    del model, base
    gc.collect()
    return {
        "requests": requests,
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "mean_latency_s": wall / requests,
    }


SCHEDULERS = ("static", "continuous")


def median(xs: list[float]) -> float:
    return percentile(xs, 0.5)


def summarize(rounds: list[dict]) -> dict:
    """Medians over the rounds after the first (all of them when there is one)."""
    use = rounds[1:] or rounds
    return {k: median([r[k] for r in use]) for k in ("p50_s", "p95_s", "tokens_per_s", "wall_s")} | {
        "errors": sum(r["errors"] for r in rounds),
        "rounds_used": len(use),
    }


def run_rounds(args, adapters: dict[str, str]) -> tuple[dict[str, list[dict]], dict[str, dict], list[float]]:
    """Both servers up at once; rounds interleaved static, continuous, static, ...; RSS after each pair."""
    import contextlib

    import httpx

    from politune.serve import ServeLimits, start_server

    rounds: dict[str, list[dict]] = {s: [] for s in SCHEDULERS}
    rss = [rss_mb()]
    with contextlib.ExitStack() as stack:
        urls = {}
        for sched in SCHEDULERS:
            rows = args.static_max_batch if sched == "static" and args.static_max_batch else args.max_batch
            limits = ServeLimits(max_batch_rows=rows, max_queue=max(256, args.requests), scheduler=sched)
            urls[sched] = stack.enter_context(start_server(args.model, adapters, limits=limits))
        models = [args.model, *adapters]
        lengths = request_lengths(args.requests, args.min_tokens or args.max_tokens, args.max_tokens)
        rss.append(rss_mb())
        for k in range(args.rounds):
            for sched in SCHEDULERS:
                note(f"round {k + 1}/{args.rounds}, {sched}: {args.requests} concurrent requests")
                rounds[sched].append(
                    asyncio.run(one_round(urls[sched], models, lengths, args.timeout, args.stagger))
                )
            gc.collect()
            rss.append(rss_mb())
        stats = {s: httpx.get(u.removesuffix("/v1") + "/health").json()["stats"] for s, u in urls.items()}
    return rounds, stats, rss


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def report(args, result: dict) -> None:
    print(
        f"serve load: {args.model} + {result['adapters']} adapters, {args.requests} concurrent chat requests x "
        f"{args.rounds} rounds per scheduler (interleaved), max_tokens {result['min_tokens']}-{args.max_tokens}, "
        f"batch <= {args.max_batch} sequences (static: {args.static_max_batch or args.max_batch}), torch threads {result['torch_threads']}, "
        f"{'all at once' if not args.stagger else f'starts spread over {args.stagger:g} s'}"
    )
    print(
        f"{'scheduler':>10} {'round':>5} {'ok':>5} {'5xx':>4} {'wall s':>7} {'tok/s':>7} "
        f"{'p50 s':>6} {'p95 s':>6} {'max s':>6}"
    )
    for sched in SCHEDULERS:
        for k, r in enumerate(result["rounds"][sched], 1):
            print(
                f"{sched:>10} {k:>5} {r['ok']:>5} {r['status_5xx']:>4} {r['wall_s']:>7.2f} "
                f"{r['tokens_per_s']:>7.1f} {r['p50_s']:>6.2f} {r['p95_s']:>6.2f} {r['max_s']:>6.2f}"
            )
    summ, ratio = result["summary"], result["ratio_continuous_over_static"]
    print(f"medians over {summ['static']['rounds_used']} round(s) each:")
    print(f"{'':>10} {'p50 s':>7} {'p95 s':>7} {'tok/s':>8} {'errors':>6}")
    for sched in SCHEDULERS:
        m = summ[sched]
        print(f"{sched:>10} {m['p50_s']:>7.2f} {m['p95_s']:>7.2f} {m['tokens_per_s']:>8.1f} {m['errors']:>6}")
    print(
        f"{'cont/stat':>10} {ratio['p50_s']:>7.2f} {ratio['p95_s']:>7.2f} {ratio['tokens_per_s']:>8.2f}"
        f"   (latency: lower is better; tok/s: higher is better)"
    )
    rss = result["rss_mb"]
    print(
        f"RSS MB: before servers {rss[0]:.0f}, loaded {rss[1]:.0f}, after each pair of rounds "
        f"{', '.join(f'{x:.0f}' for x in rss[2:])} -> growth after round 1: "
        f"{result['rss_growth_after_first_round_mb']:+.1f} MB ({'flat' if result['memory_flat'] else 'NOT flat'})"
    )
    for sched in SCHEDULERS:
        print(f"engine {sched}: {result['engine_stats'][sched]}")
    if result["peer"]:
        peer_res = result["peer"]
        print(
            f"peer (transformers generate, one request at a time, in-process): {peer_res['tokens_per_s']:.1f} "
            f"tok/s over {peer_res['requests']} requests; continuous/peer "
            f"{summ['continuous']['tokens_per_s'] / peer_res['tokens_per_s']:.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapters", type=int, default=2, help="random LoRA adapters served next to the base")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per scheduler")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument(
        "--min-tokens",
        type=int,
        default=0,
        help="if set: each request's max_tokens is log-uniform in [min, max] (seeded); default: all max",
    )
    ap.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="seconds over which request starts are spread evenly (0: all at once); latency counts from "
        "each request's own start",
    )
    ap.add_argument("--max-batch", type=int, default=8, help="max_batch_rows of both schedulers")
    ap.add_argument(
        "--static-max-batch",
        type=int,
        default=0,
        help="max_batch_rows of the static scheduler only (0: --max-batch); e.g. 8, today's engine as shipped",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--peer-requests", type=int, default=0, help="0: skip the peer")
    ap.add_argument("--flat-mb", type=float, default=50.0, help="allowed RSS growth after the first round")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.requests > 1000 or args.rounds > 10 or args.max_tokens > 256:
        ap.error("bounded: at most 1000 requests, 10 rounds, 256 max tokens")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        note(f"making {args.adapters} random LoRA adapters for {args.model}")
        adapters = make_adapters(args.model, Path(tmp), args.adapters)
        peer_res = None
        if args.peer_requests:
            note(f"peer: transformers generate, {args.peer_requests} requests one at a time")
            peer_res = peer(args.model, adapters, args.peer_requests, args.max_tokens)
        gc.collect()
        rounds, stats, rss = run_rounds(args, adapters)
    growth = rss[-1] - rss[2]  # after the first pair of rounds (caches warm) to after the last
    all_ok = all(
        r["ok"] == r["requests"] and r["status_5xx"] == 0 and r["wrong_adapter"] == 0
        for rs in rounds.values()
        for r in rs
    )
    summary = {s: summarize(rounds[s]) for s in SCHEDULERS}
    result = {
        "bench": "serve_load",
        "model": args.model,
        "adapters": len(adapters),
        "requests": args.requests,
        "rounds_per_scheduler": args.rounds,
        "max_tokens": args.max_tokens,
        "min_tokens": args.min_tokens or args.max_tokens,
        "stagger_s": args.stagger,
        "max_batch": args.max_batch,
        "static_max_batch": args.static_max_batch or args.max_batch,
        "torch_threads": args.threads or "default",
        "all_ok": all_ok,
        "rounds": rounds,
        "summary": summary,
        "ratio_continuous_over_static": {
            k: summary["continuous"][k] / summary["static"][k] for k in ("p50_s", "p95_s", "tokens_per_s")
        },
        "rss_mb": [round(x, 1) for x in rss],
        "rss_growth_after_first_round_mb": round(growth, 1),
        "memory_flat": growth < args.flat_mb,
        "engine_stats": stats,
        "peer": peer_res,
    }
    report(args, result)
    print("PASS" if all_ok and result["memory_flat"] else "FAIL")
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0 if all_ok and result["memory_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
