"""Benchmark: the chat client with 8 requests in flight vs a sequential loop, against the same local server.

Two servers, each measured both ways in the same run:

1. ``politune serve`` (``politune.serve.start_server``) on a real model (default ``smollm2-135m``): its engine
   decodes waiting requests together in one batch, so concurrency turns into batched decoding;
2. a fixed-latency OpenAI-compatible server (every request sleeps ``--latency`` seconds, then answers): the
   peer that isolates the client's own concurrency from how well a server batches.

Prints requests/s and completion tokens/s for each, and the ratio concurrent / sequential (target >= 3x).

    python bench/generate_concurrency.py                       # defaults: 32 requests, 32 tokens each
    python bench/generate_concurrency.py --model tiny-random --requests 16 --json bench-out.json
"""

from __future__ import annotations

import argparse
import asyncio
import time

from fastapi import FastAPI, Request

from politune.client import ChatClient, ClientOptions
from politune.fsutil import atomic_write_json
from politune.generate import builtin_posts

PROMPT = "In one short sentence, what is this post about?\n\n{post}"


def _conversations(n: int) -> list[list[dict]]:
    posts = builtin_posts()
    return [[{"role": "user", "content": PROMPT.format(post=posts[i % len(posts)].text)}] for i in range(n)]


async def _sequential(client: ChatClient, convs, **params) -> list:
    out = []
    for c in convs:
        out.append(await client.try_chat(c, **params))
    await client.aclose()
    return out


async def _concurrent(client: ChatClient, convs, **params) -> list:
    try:
        return await client.chat_many(convs, **params)
    finally:
        await client.aclose()


def measure(url: str, model: str, convs, concurrency: int, max_tokens: int) -> dict:
    """Throughput of a sequential loop and of ``chat_many`` at ``concurrency``, same requests, same server."""
    params = {"max_tokens": max_tokens, "temperature": 0.0, "seed": 0}
    rows = {}
    for name, conc, runner in (
        ("sequential", 1, _sequential),
        (f"concurrency {concurrency}", concurrency, _concurrent),
    ):
        client = ChatClient(url, model, options=ClientOptions(concurrency=conc, timeout=600, max_retries=2))
        t0 = time.perf_counter()
        results = asyncio.run(runner(client, convs, **params))
        wall = time.perf_counter() - t0
        failed = sum(not r.ok for r in results)
        tokens = sum(r.usage.completion_tokens for r in results if r.ok)
        rows[name] = {
            "wall_s": round(wall, 2),
            "requests": len(convs),
            "failed": failed,
            "req_per_s": round(len(convs) / wall, 3),
            "completion_tokens": tokens,
            "tok_per_s": round(tokens / wall, 1),
        }
    seq, par = rows["sequential"], rows[f"concurrency {concurrency}"]
    rows["ratio"] = round(par["req_per_s"] / seq["req_per_s"], 2)
    return rows


def fixed_latency_server(latency: float):
    """A minimal OpenAI-compatible server that waits ``latency`` s per request (a context manager -> URL)."""

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        await asyncio.sleep(latency)
        n = int(body.get("max_tokens") or 16)
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok " * n},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1},
        }

    from politune.serve import run_app

    return run_app(app)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", default="smollm2-135m", help="model politune serve loads (registry name or folder)"
    )
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.25, help="fixed-latency peer: seconds per request")
    ap.add_argument("--skip-model", action="store_true", help="only the fixed-latency peer")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()

    convs = _conversations(args.requests)
    report = {"requests": args.requests, "max_tokens": args.max_tokens, "concurrency": args.concurrency}

    def show(name: str) -> None:  # printed (and saved) as soon as each server is measured
        r = report[name]
        print(f"\n{name} ({r.get('model', str(r.get('latency_s')) + ' s/request')})")
        print(f"  {'arm':16s} {'wall s':>8s} {'req/s':>8s} {'tok/s':>8s} {'failed':>6s}")
        for arm, row in r.items():
            if isinstance(row, dict):
                print(
                    f"  {arm:16s} {row['wall_s']:8.2f} {row['req_per_s']:8.3f} {row['tok_per_s']:8.1f} "
                    f"{row['failed']:6d}"
                )
        print(f"  concurrent / sequential throughput: {r['ratio']:.2f}x (target >= 3x)", flush=True)
        if any(isinstance(row, dict) and row["failed"] for row in r.values()):
            print("  WARNING: some requests failed; the ratio is not meaningful", flush=True)
        if args.json:
            atomic_write_json(args.json, report)

    with fixed_latency_server(args.latency) as url:
        report["fixed_latency"] = {
            "latency_s": args.latency,
            **measure(url, "peer", convs, args.concurrency, args.max_tokens),
        }
    show("fixed_latency")
    if not args.skip_model:
        from politune.serve import start_server

        with start_server(args.model, served_name="teacher") as url:
            # one warm-up request so that neither arm pays for first-call set-up
            ChatClient(url, "teacher").chat_sync(convs[0], max_tokens=4)
            report["politune_serve"] = {
                "model": args.model,
                **measure(url, "teacher", convs, args.concurrency, args.max_tokens),
            }
        show("politune_serve")


if __name__ == "__main__":
    main()
