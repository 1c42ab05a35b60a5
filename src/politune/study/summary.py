"""The terminal summary of a study: each model's position with CI per track, its shift from the base with CI,
and the side-effects. Two narrow tables, so they stay readable in an 80-column terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from politune.study.runner import StudyResult

_TRACKS = ("logprob", "choice", "open")


def _ci(text: str) -> str:
    """'[-6.07, -3.21]' -> '[-6.1,-3.2]'."""
    try:
        lo, hi = (float(x) for x in text.strip("[]").split(","))
    except ValueError:
        return ""
    return f"[{lo:+.1f},{hi:+.1f}]"


def _pos(r: dict, key: str) -> str:
    v = r.get(key)
    return "" if v is None else f"{v:+.2f} {_ci(r.get(key + '.ci', ''))}"


def _shift(r: dict, key: str) -> str:
    v = r.get(key + ".shift")
    return "" if v is None else f"{v:+.2f} {_ci(r.get(key + '.shift.ci', ''))}"


def print_summary(res: StudyResult, console: Console) -> None:
    for cell in res.cells:
        rows = [r for r in res.rows if r["cell"] == cell.name]
        where = "" if cell.name == "main" else f" — cell {cell.name}"
        pos = Table(title=f"Compass position, 95% CI (economic −10 left … +10 right){where}", title_justify="left")
        for col in ("model", "track", "economic", "social", "Δ economic vs base"):
            pos.add_column(col, no_wrap=True)
        for r in rows:
            for t in _TRACKS:
                if f"{t}.economic" in r:
                    pos.add_row(r["model"], t, _pos(r, f"{t}.economic"), _pos(r, f"{t}.social"),
                                _shift(r, f"{t}.economic"))
        console.print(pos)
        extra = [("topics.mean", "topic lean"), ("rouge_l", "ROUGE-L"), ("rouge_l.delta", "Δ ROUGE-L"),
                 ("perplexity", "perplexity"), ("toxicity.mean", "toxicity"), ("refusal.rate", "refusal")]
        extra = [(k, h) for k, h in extra if any(k in r for r in rows)]
        if extra:
            side = Table(title=f"Side-effects{where}", title_justify="left")
            side.add_column("model", no_wrap=True)
            for _, h in extra:
                side.add_column(h, no_wrap=True)
            for r in rows:
                side.add_row(r["model"], *("" if r.get(k) is None else
                                          f"{r[k]:+.3f}" if k in ("topics.mean", "rouge_l.delta") else
                                          f"{r[k]:.3f}" for k, _ in extra))
            console.print(side)
    if res.report:
        console.print(f"report: {res.report}")
    console.print(f"results: {res.dir / 'results.md'}  ({res.seconds / 60:.1f} min)")
