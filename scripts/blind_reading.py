"""Blind reading of a compass run's open answers: does a tuned adapter move, as readers see it?

Two steps, with raters in between (docs/gold.md has the protocol; a rater can be a helper session given
nothing but the rubric and the blind file):

    python scripts/blind_reading.py make compass.json --out blind/          # blind.jsonl, key.jsonl, rubric.md
    # ... each rater writes {"id", "economic", "social"} per line for every id of blind/blind.jsonl ...
    python scripts/blind_reading.py score blind/ rater-a=a.jsonl rater-b=b.jsonl [--json out.json]

``make`` takes the open-track answers of every target in a compass result (run with ``--keep-answers``),
shuffles them with a fixed seed under opaque ids and writes the raters' file (``id, prompt, text`` only), the
unblinding key and the gold rubric. ``score`` joins the ratings, prints the raters' agreement per axis and,
per target, the mean reading on each axis (items of that axis, raters averaged, -2..+2; keyed by what the
answer argues, not by the proposition) with a 95% bootstrap CI over items, and each target's shift from the
reference target (``--reference``, default base; paired by item) with its CI.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

import numpy as np

from politune.fsutil import atomic_write_json, atomic_write_jsonl, parse_jsonl_objects
from politune.measure.compass.instrument import load_instrument
from politune.measure.compass.prompts import Templates, open_prompt
from politune.measure.results import CompassResult, parse_result_as, read_json
from politune.measure.scorer import AXES
from politune.measure.stats import bootstrap_ci, paired_diff_ci

sys.path.insert(0, str(Path(__file__).parent / "gold"))
from assemble import agreement, read_ratings  # noqa: E402

RUBRIC = Path(__file__).resolve().parents[1] / "src/politune/measure/gold/rubric-v1.md"


def make(compass: Path, out: Path, seed: int) -> None:
    res = parse_result_as(read_json(compass), CompassResult, str(compass))
    inst = load_instrument((res.instrument or {}).get("source") or "builtin")
    text_of = {it.id: it.text for it in inst.items}
    axis_of = {it.id: it.axis for it in inst.items}
    templates = Templates(**res.settings["templates"])
    rows = []
    for m in res.models:
        answers = (m.answers or {}).get("open")
        if not answers:
            raise SystemExit(f"{compass}: target {m.target.name} has no open answers (--keep-answers)")
        for a in answers:
            rows.append(
                {
                    "target": m.target.name,
                    "item": a["item"],
                    "axis": axis_of[a["item"]],
                    "prompt": open_prompt(templates, text_of[a["item"]]),
                    "text": a["text"] or "",
                }
            )
    random.Random(seed).shuffle(rows)
    for k, r in enumerate(rows, 1):
        r["id"] = f"b{k:04d}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "key.jsonl", rows)
    atomic_write_jsonl(
        out / "blind.jsonl", [{"id": r["id"], "prompt": r["prompt"], "text": r["text"]} for r in rows]
    )
    shutil.copyfile(RUBRIC, out / "rubric.md")
    print(f"{len(rows)} answers from {len(res.models)} targets -> {out}/blind.jsonl (key: {out}/key.jsonl)")


def score(folder: Path, raters: list[str], out: Path | None, reference: str) -> None:
    key = [d for _, d in parse_jsonl_objects((folder / "key.jsonl").read_text(encoding="utf-8"), "key.jsonl")]
    ids = {r["id"] for r in key}
    names = [s.split("=", 1)[0] for s in raters]
    ratings = [read_ratings(Path(s.split("=", 1)[1]), ids) for s in raters]
    report: dict[str, object] = {"raters": names, "n_answers": len(key), "agreement": {}, "targets": {}}
    for ax in AXES:
        mat = np.array([[r[k["id"]][ax] for r in ratings] for k in key])
        report["agreement"][ax] = agreement(mat, names)  # type: ignore[index]
    targets = sorted({r["target"] for r in key}, key=lambda t: (t != reference, t))
    reading = {(r["target"], r["item"]): r for r in key}
    items = {ax: sorted({r["item"] for r in key if r["axis"] == ax}) for ax in AXES}

    def mean_rating(target: str, item: str, ax: str) -> float:
        return float(np.mean([r[reading[(target, item)]["id"]][ax] for r in ratings]))

    print(f"{len(key)} answers, raters {', '.join(names)}")
    for ax in AXES:
        print(f"{ax}: Krippendorff alpha {report['agreement'][ax]['krippendorff_alpha_interval']}")  # type: ignore[index]
    for t in targets:
        row: dict[str, object] = {}
        for ax in AXES:
            vals = [mean_rating(t, i, ax) for i in items[ax]]
            lo, hi = bootstrap_ci(vals)
            base = [mean_rating(targets[0], i, ax) for i in items[ax]]
            d, (dlo, dhi) = paired_diff_ci(base, vals)
            row[ax] = {
                "mean": round(float(np.mean(vals)), 4),
                "ci": [round(lo, 4), round(hi, 4)],
                "n": len(vals),
            }
            if t != targets[0]:
                row[ax]["shift"] = {"diff": round(d, 4), "ci": [round(dlo, 4), round(dhi, 4)]}  # type: ignore[index]
            shift = "" if t == targets[0] else f"  shift vs {targets[0]} {d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"
            print(f"  {t:10s} {ax:8s} {np.mean(vals):+.2f} [{lo:+.2f}, {hi:+.2f}] (n {len(vals)}){shift}")
        report["targets"][t] = row  # type: ignore[index]
    if out:
        atomic_write_json(out, report)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("compass", type=Path)
    mk.add_argument("--out", type=Path, required=True)
    mk.add_argument("--seed", type=int, default=0)
    sc = sub.add_parser("score")
    sc.add_argument("folder", type=Path)
    sc.add_argument("raters", nargs="+", help="NAME=RATINGS.jsonl, one per rater")
    sc.add_argument("--json", type=Path, default=None)
    sc.add_argument("--reference", default="base", help="the target shifts are measured from")
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.compass, args.out, args.seed)
    else:
        score(args.folder, args.raters, args.json, args.reference)


if __name__ == "__main__":
    main()
