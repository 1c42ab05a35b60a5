"""Load test of ``politune serve``: N concurrent chat requests across the base model and its adapters.

Loopback only and bounded: the script starts the server itself on 127.0.0.1 (a free port) in this process,
sends ``--requests`` chat requests at once (round-robin over base + adapters, ``--max-tokens`` each), and checks
that every one succeeds with no 5xx. It repeats the round ``--rounds`` times and reads the process RSS after each
round: memory is "flat" when the later rounds grow RSS by less than ``--flat-mb``.

Peer, measured in the same run: transformers' own ``model.generate`` on the same base model + PEFT adapters,
one request at a time in-process (no HTTP), the way a script without a server would answer the same prompts.
The ratio is output tokens per second, server / peer (on ``--peer-requests`` of the requests, to stay bounded).

Usage::

    python bench/serve_load.py                       # smollm2-135m, 2 adapters, 100 requests x 3 rounds
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


async def one_round(url: str, models: list[str], requests: int, max_tokens: int, timeout: float) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def call(i: int):
            body = {
                "model": models[i % len(models)],
                "max_tokens": max_tokens,
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapters", type=int, default=2, help="random LoRA adapters served next to the base")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--peer-requests", type=int, default=12, help="0: skip the peer")
    ap.add_argument("--flat-mb", type=float, default=50.0, help="allowed RSS growth after the first round")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.requests > 1000 or args.rounds > 10 or args.max_tokens > 256:
        ap.error("bounded: at most 1000 requests, 10 rounds, 256 max tokens")

    from politune.serve import ServeLimits, start_server

    def note(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        note(f"making {args.adapters} random LoRA adapters for {args.model}")
        adapters = make_adapters(args.model, Path(tmp), args.adapters)
        if args.peer_requests:
            note(f"peer: transformers generate, {args.peer_requests} requests one at a time")
        peer_res = (
            peer(args.model, adapters, args.peer_requests, args.max_tokens) if args.peer_requests else None
        )
        gc.collect()
        limits = ServeLimits(max_batch_rows=args.max_batch, max_queue=max(256, args.requests))
        rounds, rss = [], [rss_mb()]
        with start_server(args.model, adapters, host="127.0.0.1", limits=limits) as url:
            models = [args.model, *adapters]
            rss.append(rss_mb())
            for k in range(args.rounds):
                note(f"round {k + 1}/{args.rounds}: {args.requests} concurrent requests")
                rounds.append(
                    asyncio.run(one_round(url, models, args.requests, args.max_tokens, args.timeout))
                )
                gc.collect()
                rss.append(rss_mb())
            import httpx

            stats = httpx.get(url.removesuffix("/v1") + "/health").json()
    growth = rss[-1] - rss[2]  # after the first round (caches warm) to after the last
    all_ok = all(
        r["ok"] == r["requests"] and r["status_5xx"] == 0 and r["wrong_adapter"] == 0 for r in rounds
    )
    last = rounds[-1]
    result = {
        "bench": "serve_load",
        "model": args.model,
        "adapters": len(adapters),
        "requests": args.requests,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "max_batch": args.max_batch,
        "all_ok": all_ok,
        "rounds_detail": rounds,
        "rss_mb": [round(x, 1) for x in rss],
        "rss_growth_after_first_round_mb": round(growth, 1),
        "memory_flat": growth < args.flat_mb,
        "engine_stats": stats["stats"],
        "peer": peer_res,
        "throughput_ratio_vs_peer": (last["tokens_per_s"] / peer_res["tokens_per_s"]) if peer_res else None,
    }
    print(
        f"serve load: {args.model} + {len(adapters)} adapters, {args.requests} concurrent chat requests x "
        f"{args.rounds} rounds, max_tokens {args.max_tokens}, batch <= {args.max_batch}"
    )
    print(
        f"{'round':>5} {'ok':>5} {'5xx':>4} {'wall s':>7} {'tok/s':>7} {'p50 s':>6} {'p95 s':>6} {'max s':>6}"
    )
    for k, r in enumerate(rounds, 1):
        print(
            f"{k:>5} {r['ok']:>5} {r['status_5xx']:>4} {r['wall_s']:>7.1f} {r['tokens_per_s']:>7.1f} "
            f"{r['p50_s']:>6.2f} {r['p95_s']:>6.2f} {r['max_s']:>6.2f}"
        )
    print(
        f"RSS MB: before server {rss[0]:.0f}, loaded {rss[1]:.0f}, after rounds "
        f"{', '.join(f'{x:.0f}' for x in rss[2:])} -> growth after round 1: {growth:+.1f} MB "
        f"({'flat' if result['memory_flat'] else 'NOT flat'})"
    )
    print(f"engine: {stats['stats']}")
    if peer_res:
        print(
            f"peer (transformers generate, one request at a time, in-process): {peer_res['tokens_per_s']:.1f} tok/s "
            f"over {peer_res['requests']} requests, {peer_res['mean_latency_s']:.2f} s each"
        )
        print(f"ratio server/peer (output tokens/s): {result['throughput_ratio_vs_peer']:.2f}x")
    print("PASS" if all_ok and result["memory_flat"] else "FAIL")
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0 if all_ok and result["memory_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
