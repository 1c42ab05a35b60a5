"""Step 3 of the gold set (docs/gold.md): join the blind ratings to the answers, split, measure agreement.

Inputs: ``answers.jsonl`` (from generate_answers.py, with sources) and one ratings file per rater
(``{"id", "economic", "social"}`` per line, integers in -2..2, every blind id exactly once).
Outputs: the gold file (``gold-v1.jsonl``: one row per answer with every rater's ratings and its split) and
the protocol record (``protocol-v1.json``: raters, rubric hash, agreement per axis).

Split: by prompt, so that every answer to one prompt lands in the same half; within each (kind, axis) group
the prompts are shuffled with a fixed seed and dealt alternately to dev and test.

    python scripts/gold/assemble.py gold-work/answers.jsonl rater-a=ratings-a.jsonl rater-b=... \
        --out src/politune/measure/gold
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import numpy as np

from politune.fsutil import atomic_write_json, atomic_write_jsonl, parse_jsonl_objects, sha256_text
from politune.measure.scorer import AXES


def read_ratings(path: Path, ids: set[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for n, d in parse_jsonl_objects(path.read_text(encoding="utf-8"), str(path)):
        if d.get("id") not in ids or d["id"] in out:
            raise SystemExit(f"{path}:{n}: id {d.get('id')!r} unknown or rated twice")
        for a in AXES:
            if not isinstance(d.get(a), int) or not -2 <= d[a] <= 2:
                raise SystemExit(f"{path}:{n}: {a}: expected an integer in -2..2, got {d.get(a)!r}")
        out[d["id"]] = {a: d[a] for a in AXES}
    if set(out) != ids:
        raise SystemExit(f"{path}: {len(ids - set(out))} ids not rated")
    return out


def krippendorff_interval(matrix: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, for an (items x raters) matrix with no missing values."""
    n_items, m = matrix.shape
    values = matrix.ravel()
    d_o = sum(((row[:, None] - row[None, :]) ** 2).sum() / (m - 1) for row in matrix) / (n_items * m)
    d_e = ((values[:, None] - values[None, :]) ** 2).sum() / (values.size * (values.size - 1))
    return float(1 - d_o / d_e) if d_e > 0 else float("nan")


def agreement(mat: np.ndarray, names: list[str]) -> dict:
    """Per-axis agreement between raters: alpha, exact / within-one agreement, sign agreement, pairwise rho."""
    from scipy.stats import spearmanr

    pairs = {}
    for i, j in itertools.combinations(range(len(names)), 2):
        a, b = mat[:, i], mat[:, j]
        both = (a != 0) & (b != 0)
        either = (a != 0) | (b != 0)
        pairs[f"{names[i]}~{names[j]}"] = {
            "exact": round(float((a == b).mean()), 4),
            "within_one": round(float((abs(a - b) <= 1).mean()), 4),
            "spearman": round(float(spearmanr(a, b).statistic), 4),
            "sign_agree_both_nonzero": round(float((np.sign(a[both]) == np.sign(b[both])).mean()), 4),
            "n_both_nonzero": int(both.sum()),
            "n_either_nonzero": int(either.sum()),
        }
    return {
        "krippendorff_alpha_interval": round(krippendorff_interval(mat.astype(float)), 4),
        "pairs": pairs,
        "nonzero_share": {n: round(float((mat[:, k] != 0).mean()), 4) for k, n in enumerate(names)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("answers", type=Path)
    ap.add_argument("raters", nargs="+", help="NAME=RATINGS.jsonl, one per rater")
    ap.add_argument("--rubric", type=Path, default=Path("src/politune/measure/gold/rubric-v1.md"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    answers = [d for _, d in parse_jsonl_objects(args.answers.read_text(encoding="utf-8"), str(args.answers))]
    ids = {a["id"] for a in answers}
    names, ratings = [], []
    for spec in args.raters:
        name, path = spec.split("=", 1)
        names.append(name)
        ratings.append(read_ratings(Path(path), ids))

    groups: dict[tuple[str, str], list[str]] = {}
    for a in answers:
        groups.setdefault((a["kind"], a["axis"]), [])
        if a["pid"] not in groups[(a["kind"], a["axis"])]:
            groups[(a["kind"], a["axis"])].append(a["pid"])
    split_of = {}
    rng = random.Random(args.seed)
    for key in sorted(groups):
        pids = sorted(groups[key])
        rng.shuffle(pids)
        split_of.update({pid: ("dev", "test")[k % 2] for k, pid in enumerate(pids)})

    rows = [
        {
            "id": a["id"],
            "split": split_of[a["pid"]],
            "source": a["source"],
            "kind": a["kind"],
            "axis": a["axis"],
            "topic": a["topic"],
            "pid": a["pid"],
            "prompt": a["prompt"],
            "text": a["text"],
            "ratings": {ax: [r[a["id"]][ax] for r in ratings] for ax in AXES},
        }
        for a in sorted(answers, key=lambda a: a["id"])
    ]
    protocol = {
        "gold": "gold-v1",
        "n_items": len(rows),
        "raters": names,
        "rubric": args.rubric.name,
        "rubric_sha256": sha256_text(args.rubric.read_text(encoding="utf-8")),
        "splits": {s: sum(r["split"] == s for r in rows) for s in ("dev", "test")},
        "sources": {s: sum(r["source"] == s for r in rows) for s in sorted({r["source"] for r in rows})},
        "agreement": {ax: agreement(np.array([r["ratings"][ax] for r in rows]), names) for ax in AXES},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(args.out / "gold-v1.jsonl", rows)
    atomic_write_json(args.out / "protocol-v1.json", protocol)
    print(protocol["splits"], protocol["sources"])
    for ax in AXES:
        print(ax, protocol["agreement"][ax])


if __name__ == "__main__":
    main()
