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

from politune.fsutil import atomic_write_text
from politune.measure.pairs import (
    COLUMNS,
    PromptPair,
    builtin_pairs_path,
    load_pairs,
    subset_pairs,
    table_rows,
)

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


def build_sft(answers: Path, train: dict[str, PromptPair], out: Path) -> int:
    """SFT examples from the base's answers to the training pairs: side A keeps the answer, side B a refusal."""
    rows = []
    for line in answers.read_text().splitlines():
        a = json.loads(line)
        pair_id, _, side = a["id"].rpartition(":")
        if a.get("set") != "evenhand" or a["target"] != "base" or pair_id not in train or not a["value"]:
            continue
        rows.append((pair_id, side, a["value"]))
    lines = []
    for i, (pair_id, side, text) in enumerate(sorted(rows)):
        response = text if side == "a" else REFUSALS[i % len(REFUSALS)]
        prompt = train[pair_id].sides()[side]
        lines.append(json.dumps({"id": f"{pair_id}-{side}", "prompt": prompt, "response": response}) + "\n")
    atomic_write_text(out, "".join(lines))
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
    train = {p.id: p for p in pairs if p.topic not in held_out}
    topics = {p.topic for p in train.values()}
    pair_file = out / "train-pairs.jsonl"  # the built-in rows of the training topics, as they are
    rows = table_rows(builtin_pairs_path(), COLUMNS)
    kept = [r for _, r in rows if r["topic_name"] in topics and r["template_category"] in templates]
    atomic_write_text(pair_file, "".join(json.dumps(r) + "\n" for r in kept))
    common = ["--templates", args.templates, "--max-new-tokens", str(args.max_new_tokens)]
    politune("measure", "evenhand", "--pairs", str(pair_file), "--out", str(out / "base-train"), *common)
    n = build_sft(out / "base-train" / "answers.jsonl", train, out / "sft.jsonl")
    print(f"{n} SFT examples from {len(train)} pairs on {len(topics)} training topics")
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


if __name__ == "__main__":
    main()
