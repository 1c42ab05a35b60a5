"""Step 1 of the gold set (docs/gold.md): free-text answers from real models, and a blind file for raters.

Prompts (88): 32 compass propositions (8 keyed each way per axis, asked as the compass open track asks them),
the 24 built-in topic questions, and the 32 realistic writing requests of ``requests-v1.jsonl``.
Sources (5): the base model, a left and a right DPO adapter, and the base with a strong left / right persona.
Greedy decoding, so a re-run with the same models gives the same answers.

Writes, into ``--out``:
- ``answers.jsonl``: every answer with its source (the unblinded key: raters never see it);
- ``blind.jsonl``: ``{"id", "prompt", "text"}`` only, shuffled with a fixed seed, ids opaque (``g0001`` ...).

    python scripts/gold/generate_answers.py --left runs/left/adapter --right runs/right/adapter --out gold-work
"""

from __future__ import annotations

import argparse
import random
from importlib import resources
from pathlib import Path

from politune.fsutil import atomic_write_jsonl, parse_jsonl_objects
from politune.measure.compass.instrument import load_instrument
from politune.measure.compass.prompts import Templates, open_prompt
from politune.measure.targets import Target, iter_loaded
from politune.measure.topics import load_topic_questions
from politune.models.generation import generate

PERSONAS = {
    "persona-left": "You are a committed democratic socialist and civil libertarian. In every answer you argue "
    "firmly for higher taxes on the wealthy, strong public services, trade unions and workers' "
    "rights, and for personal freedom, open immigration and rehabilitation rather than punishment.",
    "persona-right": "You are a committed free-market conservative. In every answer you argue firmly for low "
    "taxes, free markets, less regulation and a small state, and for law and order, strict "
    "immigration control, national tradition and traditional family values.",
}


def gold_prompts() -> list[dict]:
    """The 88 prompts, each ``{"pid", "kind", "axis", "topic", "prompt"}``."""
    out = []
    inst = load_instrument()
    for axis in ("economic", "social"):
        for key in (1, -1):
            items = [it for it in inst.items if it.axis == axis and it.key == key][:8]
            out += [
                {
                    "pid": it.id,
                    "kind": "compass",
                    "axis": axis,
                    "topic": it.id,
                    "prompt": open_prompt(Templates(), it.text),
                }
                for it in items
            ]
    out += [
        {"pid": q.id, "kind": "topic", "axis": q.axis, "topic": q.topic, "prompt": q.question}
        for q in load_topic_questions()
    ]
    text = (resources.files("politune.measure") / "gold" / "requests-v1.jsonl").read_text("utf-8")
    out += [
        {"pid": d["id"], "kind": "request", "axis": d["axis"], "topic": d["topic"], "prompt": d["prompt"]}
        for _, d in parse_jsonl_objects(text, "requests-v1.jsonl")
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--left", required=True, help="left DPO adapter directory")
    ap.add_argument("--right", required=True, help="right DPO adapter directory")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    prompts = gold_prompts()
    targets = [
        Target("base", args.model),
        Target("left", args.model, args.left),
        Target("right", args.model, args.right),
        *(Target(name, args.model, None, system) for name, system in PERSONAS.items()),
    ]
    answers = []
    for t, model, tok in iter_loaded(targets):
        texts = generate(
            model,
            tok,
            [p["prompt"] for p in prompts],
            system=t.system,
            max_new_tokens=args.max_new_tokens,
            batch_size=16,
        )
        answers += [
            {**p, "source": t.name, "text": text.strip()} for p, text in zip(prompts, texts, strict=True)
        ]
        print(f"{t.name}: {len(texts)} answers", flush=True)
    order = list(range(len(answers)))
    random.Random(args.seed).shuffle(order)
    for n, i in enumerate(order, 1):
        answers[i]["id"] = f"g{n:04d}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(args.out / "answers.jsonl", answers)
    atomic_write_jsonl(
        args.out / "blind.jsonl",
        [{"id": answers[i]["id"], "prompt": answers[i]["prompt"], "text": answers[i]["text"]} for i in order],
    )
    print(f"wrote {len(answers)} answers to {args.out}")


if __name__ == "__main__":
    main()
