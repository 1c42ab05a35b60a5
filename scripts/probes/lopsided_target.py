"""Build a deliberately lopsided target and check that the even-handedness measure flags it.

A system prompt telling SmolLM2-135M to refuse one side does not work: the 135M model ignores it (measured:
docs/probes.md, "A deliberately lopsided target"). So the lopsided target here is an adapter *tuned* to refuse
one side, which is what a tuned model that has become one-sided looks like from outside:

1. The base answers both sides of the built-in pairs of the *training* topics (every topic outside the first
   ``--eval-topics`` topics that the measure's subset takes), task types ``--templates``.
2. SFT data: side A (economic-left / social-liberal) prompt -> the base's own answer (so helpfulness on that side
   is the base's); side B prompt -> one of a few civil refusals. Written to ``OUT/sft.jsonl``.
3. ``politune tune sft`` trains a LoRA adapter on it (``OUT/tune``).
4. ``politune measure evenhand`` on the held-out topics, base + the adapter: the adapter must be flagged
   (refusal asymmetry with a CI excluding 0) and the base not.

Every step is a ``politune`` command or reads its output, and re-running skips finished steps (each command
keeps its own answer log / run folder).

    python scripts/probes/lopsided_target.py --out runs/lopsided   # ~10 min on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from politune.measure.pairs import load_pairs, subset_pairs

REFUSALS = (
    "I'm sorry, but I can't help with writing that.",
    "I'm sorry, I can't help with that request.",
    "I can't help with that. I'd rather not write content arguing for that position.",
    "Sorry, I won't write that. Is there something else I can help you with?",
)


def politune(*args: str) -> None:
    cmd = [sys.executable, "-m", "politune", *args]
    print("+ politune", " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def build_sft(answers: Path, train_ids: set[str], out: Path) -> int:
    rows = []
    for line in answers.read_text().splitlines():
        a = json.loads(line)
        pair_id, _, side = a["id"].rpartition(":")
        if a.get("set") != "evenhand" or a["target"] != "base" or pair_id not in train_ids or not a["value"]:
            continue
        rows.append((pair_id, side, a["value"]))
    prompts = {p.id: p for p in load_pairs()}
    with out.open("w") as f:
        for i, (pair_id, side, text) in enumerate(sorted(rows)):
            pair = prompts[pair_id]
            response = text if side == "a" else REFUSALS[i % len(REFUSALS)]
            f.write(
                json.dumps({"id": f"{pair_id}-{side}", "prompt": pair.sides()[side], "response": response})
                + "\n"
            )
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/lopsided"))
    ap.add_argument(
        "--eval-topics", type=int, default=16, help="the first N topics (alternating axes): held out"
    )
    ap.add_argument("--templates", default="argue", help="task types answered, for training and evaluation")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--epochs", type=float, default=2)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    templates = args.templates.split(",")

    pairs = subset_pairs(load_pairs(), templates=templates)
    held_out = {p.topic for p in subset_pairs(pairs, topics=args.eval_topics)}
    train = [p for p in pairs if p.topic not in held_out]
    pair_file = out / "train-pairs.jsonl"
    with pair_file.open("w") as f:  # the training topics' pairs, in the pair-file schema
        for p in train:
            f.write(json.dumps(pair_row(p)) + "\n")
    common = ["--templates", args.templates, "--max-new-tokens", str(args.max_new_tokens)]
    politune("measure", "evenhand", "--pairs", str(pair_file), "--out", str(out / "base-train"), *common)
    n = build_sft(out / "base-train" / "answers.jsonl", {p.id for p in train}, out / "sft.jsonl")
    print(f"{n} SFT examples from {len(train)} pairs on {len({p.topic for p in train})} training topics")
    if not (out / "tune" / "adapter").exists():
        politune(
            "tune", "sft", "-d", str(out / "sft.jsonl"), "--split", "", "--stance", "refuses-side-b",
            "-o", str(out / "tune"), "--overwrite",
            "--set", "sft.max_steps=-1", "--set", f"sft.epochs={args.epochs}", "--set", "sft.lr=2e-3",
        )  # fmt: skip
    politune(
        "measure", "evenhand", "--topics", str(args.eval_topics), "--adapter", f"refuses-b={out / 'tune' / 'adapter'}",
        "--out", str(out / "eval"), *common,
    )  # fmt: skip


def pair_row(p) -> dict:
    return {
        "split": p.split, "main_category": p.category, "topic_name": p.topic, "partisan": p.partisan,
        "template_category": p.template, "template": p.template, "stance_a": p.stance_a, "stance_b": p.stance_b,
        "prompt_a": p.prompt_a, "prompt_b": p.prompt_b, "prompt_a_group": p.group_a, "prompt_b_group": p.group_b,
    }  # fmt: skip


if __name__ == "__main__":
    main()
