"""How often does the offline community judge of ``politune measure winrate`` pick the answer a community would
prefer? Measured on the blind gold set (docs/gold.md): every two answers to the same prompt (five models answered
each) whose raters' mean lean on the prompt's axis differs by at least ``--min-gap`` points (-2..+2 scale) form a
pair with a known answer: a left-leaning reader prefers the answer rated further left, a right-leaning reader the
other. The judge sees the two answers in a seeded random order and says first / second / tie.

    python scripts/validate_community_judge.py [--split test] [--min-gap 1.0] [--margin 0.1] [--json OUT]

Prints, per axis and overall: pairs, correct, wrong and tie shares (a tie is neither), and the accuracy on the
decisive verdicts, with 95% bootstrap CIs over pairs. Numbers in docs/compred.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random

from politune.measure.community_judge import Item, OfflineCommunityJudge, stance_community
from politune.measure.scorer import scorer_by_name
from politune.measure.stats import bootstrap_ci
from politune.measure.validate_judge import builtin_gold_path, load_gold


def _share(values: list[float], seed: int) -> dict:
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"value": sum(values) / len(values) if values else None, "ci": [lo, hi], "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="test")
    ap.add_argument("--min-gap", type=float, default=1.0)
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    gold = load_gold(split=a.split)
    with open(builtin_gold_path(), encoding="utf-8") as f:  # GoldItem does not keep the prompt's axis
        raw = {row["id"]: row.get("axis") or "economic" for row in map(json.loads, f) if row}
    by_prompt: dict[str, list] = {}
    for g in gold:
        by_prompt.setdefault(g.prompt, []).append(g)
    judge = OfflineCommunityJudge(scorer_by_name("offline"), a.margin)
    out: dict = {"split": a.split, "min_gap": a.min_gap, "margin": a.margin, "communities": {}}
    for stance in ("left", "right"):
        community = stance_community(stance)
        items, first, second, truth = [], [], [], []
        for prompt, answers in by_prompt.items():
            for x, y in itertools.combinations(answers, 2):
                axis = raw[x.id]
                gap = x.gold(axis) - y.gold(axis)  # > 0: x is further right
                if abs(gap) < a.min_gap:
                    continue
                flip = random.Random(f"{a.seed}:{x.id}:{y.id}").random() < 0.5
                p, q = (y, x) if flip else (x, y)
                items.append(Item(f"{p.id}-{q.id}", prompt, axis))
                first.append(p.text)
                second.append(q.text)
                further = "first" if (p.gold(axis) - q.gold(axis) > 0) == (stance == "right") else "second"
                truth.append(further)
        verdicts = judge.verdicts(items, first, second, community)
        rows = {"economic": [], "social": []}
        for it, v, t in zip(items, verdicts, truth, strict=True):
            rows[it.axis].append((v.choice, t))
        res = {}
        for axis, rs in [*rows.items(), ("all", rows["economic"] + rows["social"])]:
            known = [(c, t) for c, t in rs if c is not None]
            decisive = [float(c == t) for c, t in known if c != "tie"]
            res[axis] = {
                "pairs": len(rs),
                "scored": len(known),
                "correct": _share([float(c == t) for c, t in known], a.seed),
                "tie": _share([float(c == "tie") for c, _ in known], a.seed),
                "wrong": _share([float(c not in (t, "tie")) for c, t in known], a.seed),
                "decisive_accuracy": _share(decisive, a.seed),
            }
        out["communities"][community.name] = res
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
