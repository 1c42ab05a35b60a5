"""Rebuild ``src/politune/measure/issues/prompts-v1.jsonl`` from the issue table (``issues-v1.jsonl``), the
request templates (``politune.measure.issue_prompts.TEMPLATES``) and the three framings. ``tests/measure/test_issues.py``
checks the shipped file is exactly what this writes.

    python scripts/build_issue_prompts.py
"""

from __future__ import annotations

import json

from politune.fsutil import atomic_write_text
from politune.measure.issue_prompts import build_issue_prompts, builtin_prompts_path, load_issue_table


def main() -> None:
    rows = build_issue_prompts(load_issue_table())
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(builtin_prompts_path(), text)
    print(f"wrote {len(rows)} issue prompts to {builtin_prompts_path()}")


if __name__ == "__main__":
    main()
