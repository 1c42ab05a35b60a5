"""Refit the agreement reader on the shipped corpus and write ``measure/corpus/agree-probe-v1.json``.

    python scripts/fit_agreement_reader.py        # ~1.5 min on 2 cores

The shipped file is tied to the corpus (and LAYER, C) by hash: a test fails when they drift apart.
"""

from __future__ import annotations

from politune.measure.agreement import (
    READER_VERSION,
    _hash,
    fit_reader,
    load_agreement_corpus,
    shipped_reader_path,
)
from politune.measure.stance import save_probe


def main() -> None:
    rows = load_agreement_corpus()
    save_probe(shipped_reader_path(), {"agreement": fit_reader(rows)}, _hash(rows), READER_VERSION)
    print(f"wrote {shipped_reader_path()} ({len(rows)} corpus answers)")


if __name__ == "__main__":
    main()
