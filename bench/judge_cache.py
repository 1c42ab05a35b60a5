"""Judge cache benchmark: judge time of a warm-cache re-run vs the first (cold) run, in the same process.

A real OpenAI-compatible judge server on 127.0.0.1 (``tests/offline_judge.py``: the offline
MiniLM scorer behind the chat API, plus ``--latency`` seconds per request to stand in for a remote judge) rates
the topic answers and refusals of ``--model`` (``measure_effects`` with topics + refusal). Run 1 starts with an
empty judge cache; run 2 is the same job with the cache warm; run 3 is the peer, the same job with the cache
off. Answers are generated once (run 1) and reused from ``answers.jsonl``, so only judge time differs.
Target: warm judge time < 10% of the cold one.

    python bench/judge_cache.py [--model smollm2-135m] [--latency 0.05] [--out /tmp/politune-judge-bench]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from politune.serve import run_app as serve  # noqa: E402  (uvicorn in a thread on a free port)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per judge request")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default=None, help="run folder (default: a temp dir)")
    args = ap.parse_args()

    from politune.client import ClientOptions
    from politune.measure.effects import EffectsSettings, measure_effects
    from politune.measure.judge import Judge

    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1] / "tests")
    )  # the fake judge lives with the tests
    from offline_judge import offline_judge_app
    from politune.measure.targets import Target

    out = Path(args.out or tempfile.mkdtemp(prefix="politune-judge-bench-"))
    cache = out / "judge-cache"
    shutil.rmtree(cache, ignore_errors=True)
    targets = [Target("base", args.model)]
    settings = EffectsSettings(max_new_tokens=args.max_new_tokens)
    rows = []
    with serve(offline_judge_app(latency_s=args.latency)) as url:
        for label, use_cache in (("cold cache", True), ("warm cache", True), ("no cache (peer)", False)):
            judge = Judge(
                url,
                "offline-minilm-judge",
                client=ClientOptions(concurrency=args.concurrency),
                cache_dir=cache,
                use_cache=use_cache,
            )
            t0 = time.perf_counter()
            measure_effects(targets, ("topics", "refusal"), out_dir=out, judge=judge, settings=settings)
            wall = time.perf_counter() - t0
            rep = judge.report()
            rows.append((label, rep["seconds"], rep["requests"], rep["cache_hits"], rep["items"], wall))
            print(
                f"{label:16s} judge {rep['seconds']:7.2f} s  requests {rep['requests']:4d}  "
                f"cache hits {rep['cache_hits']:4d}/{rep['items']:4d}  run wall {wall:7.1f} s",
                flush=True,
            )
    cold, warm, peer = rows[0][1], rows[1][1], rows[2][1]
    print(f"warm / cold judge time = {warm / cold:.4f} (target < 0.10); warm / no-cache = {warm / peer:.4f}")


if __name__ == "__main__":
    main()
