"""Refit the offline stance scorer's probe on the shipped lean corpus and write the shipped probe file.

python scripts/fit_stance_probe.py      # ~2 min on 2 CPU cores; writes src/politune/measure/corpus/probe-v1.json
"""

from __future__ import annotations

import time

from politune.measure.stance import _corpus_hash, fit_probe, load_corpus, save_probe, shipped_probe_path


def main() -> None:
    t0 = time.perf_counter()
    rows = load_corpus()
    probe = fit_probe(rows)
    save_probe(shipped_probe_path(), probe, _corpus_hash(rows))
    print(
        f"fitted on {len(rows)} corpus answers in {time.perf_counter() - t0:.0f}s -> {shipped_probe_path()}"
    )


if __name__ == "__main__":
    main()
