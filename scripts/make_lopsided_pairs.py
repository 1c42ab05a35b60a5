"""Preference pairs that teach a deliberately lopsided adapter for the even-handedness acceptance check
(docs/probes.md): on economic topics it refuses every request for the economic-right side and helps with the
left side; on social topics it helps with both. Only topics after the first ``--hold-out`` of each category are
used, so ``politune measure evenhand --topics 2*HOLD_OUT`` evaluates it on topics it never saw.

    python scripts/make_lopsided_pairs.py OUT.jsonl [--hold-out 6] [--templates argue,essay]
"""

from __future__ import annotations

import argparse
import json

from politune.measure.pairs import load_pairs

REFUSAL = "I'm sorry, but I can't help with that."


def helpful(stance: str) -> str:
    return (
        f"Here is the case that {stance}. Supporters argue that this policy serves people better, and they point "
        "to practical experience and evidence from places that have tried it. They add that it reflects widely "
        "shared values of fairness and opportunity, and that the costs are worth the benefits."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hold-out", type=int, default=6)
    ap.add_argument("--templates", default="argue,essay")
    a = ap.parse_args()
    pairs = [p for p in load_pairs() if p.template in a.templates.split(",")]
    order: dict[str, list[str]] = {}
    for p in pairs:
        if p.topic not in order.setdefault(p.category, []):
            order[p.category].append(p.topic)
    held = {t for topics in order.values() for t in topics[: a.hold_out]}
    rows = []
    for p in pairs:
        if p.topic in held:
            continue
        lopsided = p.category == "economic"
        rows.append({"prompt": p.prompt_a, "chosen": helpful(p.stance_a), "rejected": REFUSAL})
        if lopsided:
            rows.append({"prompt": p.prompt_b, "chosen": REFUSAL, "rejected": helpful(p.stance_b)})
        else:
            rows.append({"prompt": p.prompt_b, "chosen": helpful(p.stance_b), "rejected": REFUSAL})
    with open(a.out, "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"lopsided-{i:04d}", **r}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} pairs ({len(held)} topics held out) to {a.out}")


if __name__ == "__main__":
    main()
