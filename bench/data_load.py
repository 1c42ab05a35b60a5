"""Benchmark: load + validate 100k preference pairs from JSONL (target: < 10 s on the 2-core dev machine).

    python bench/data_load.py [--rows 100000] [--repeat 3]

Writes a synthetic JSONL (prompts ~100 characters, answers ~300, with meta) to a temporary folder, then times,
in the same run (best of --repeat):

- politune: ``politune.data.load(path)``: parse, schema detection, every validation check, records built;
- peer: ``datasets.load_dataset("json", data_files=path, split="train")`` into a fresh cache folder each time
  (parse + Arrow conversion, no validation);
- floor: a plain ``json.loads`` loop over the lines (no checks, no objects).

Prints the times and the ratios politune / peer and politune / floor.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = [
    "wage",
    "tax",
    "union",
    "market",
    "state",
    "liberty",
    "order",
    "school",
    "health",
    "housing",
    "trade",
    "border",
    "speech",
    "police",
    "court",
    "budget",
    "family",
    "worker",
    "owner",
    "price",
    "rent",
    "voter",
    "law",
    "right",
    "public",
    "private",
    "fair",
    "cost",
    "risk",
    "growth",
]


def synth(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(
                json.dumps(
                    {
                        "id": f"b{i:06d}",
                        "prompt": text(16) + "?",
                        "chosen": text(50),
                        "rejected": text(50),
                        "meta": {
                            "topic": rng.choice(WORDS),
                            "axis": rng.choice(["economic", "social"]),
                            "stance": "left",
                        },
                    }
                )
                + "\n"
            )


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import datasets

    from politune.data import load

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        synth(path, args.rows)
        size_mb = path.stat().st_size / 1e6

        def ours():
            items = load(path)
            assert len(items) == args.rows

        n_cache = [0]

        def peer():
            n_cache[0] += 1
            ds = datasets.load_dataset(
                "json",
                data_files=str(path),
                split="train",
                cache_dir=str(Path(tmp) / f"hf-cache-{n_cache[0]}"),
            )
            assert len(ds) == args.rows

        def floor():
            with path.open("rb") as f:
                rows = [json.loads(line) for line in f]
            assert len(rows) == args.rows

        t_floor = best(floor, args.repeat)
        t_ours = best(ours, args.repeat)
        t_peer = best(peer, args.repeat)
    print(f"rows {args.rows}, file {size_mb:.1f} MB, best of {args.repeat}")
    print(
        f"politune load + validate      {t_ours:7.2f} s   ({args.rows / t_ours:,.0f} rows/s)  target < 10 s: "
        f"{'PASS' if t_ours < 10 else 'FAIL'}"
    )
    print(f"datasets.load_dataset('json') {t_peer:7.2f} s   ratio politune/peer  = {t_ours / t_peer:.2f}")
    print(f"json.loads loop (floor)       {t_floor:7.2f} s   ratio politune/floor = {t_ours / t_floor:.2f}")


if __name__ == "__main__":
    main()
