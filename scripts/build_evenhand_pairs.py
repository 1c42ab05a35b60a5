"""Rebuild ``src/politune/measure/evenhand/pairs-v1.jsonl`` from the topic table (``topics-v1.jsonl``) and the
task templates (``politune.measure.pairs.TEMPLATES``). ``tests/measure/test_evenhand.py`` checks the shipped file is
exactly what this writes.

    python scripts/build_evenhand_pairs.py
"""

from __future__ import annotations

import json

from politune.fsutil import atomic_write_text
from politune.measure.pairs import build_pairs, builtin_pairs_path, load_topic_table


def main() -> None:
    rows = build_pairs(load_topic_table())
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(builtin_pairs_path(), text)
    print(f"wrote {len(rows)} pairs to {builtin_pairs_path()}")


if __name__ == "__main__":
    main()
