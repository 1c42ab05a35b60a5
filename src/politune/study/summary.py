"""The terminal summary of a study: each model's position with CI, its shift from the base, side-effects."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from politune.study.runner import StudyResult

_TRACKS = ("logprob", "choice", "open")


def print_summary(res: StudyResult, console: Console) -> None:
    for cell in res.cells:
        rows = [r for r in res.rows if r["cell"] == cell.name]
        title = "results" if cell.name == "main" else f"cell {cell.name} {cell.assignment}"
        table = Table(title=title, title_justify="left")
        table.add_column("model")
        tracks = [t for t in _TRACKS if any(f"{t}.economic" in r for r in rows)]
        for t in tracks:
            table.add_column(f"{t} econ [95% CI]")
            table.add_column(f"{t} social")
            table.add_column(f"{t} Δecon vs base [CI]")
        extra = [("topics.mean", "topic lean"), ("rouge_l.delta", "ΔROUGE-L"), ("toxicity.mean", "toxicity"),
                 ("refusal.rate", "refusal")]
        extra = [(k, h) for k, h in extra if any(k in r for r in rows)]
        for _, h in extra:
            table.add_column(h)
        for r in rows:
            cells = [r["model"]]
            for t in tracks:
                cells.append(f"{r.get(f'{t}.economic', float('nan')):+.2f} {r.get(f'{t}.economic.ci', '')}")
                soc = r.get(f"{t}.social")
                cells.append("" if soc is None else f"{soc:+.2f}")
                sh = r.get(f"{t}.economic.shift")
                cells.append("" if sh is None else f"{sh:+.2f} {r.get(f'{t}.economic.shift.ci', '')}")
            for k, _ in extra:
                v = r.get(k)
                cells.append("" if v is None else f"{v:+.3f}" if k.endswith("delta") else f"{v:.3f}")
            table.add_row(*cells)
        console.print(table)
    if res.report:
        console.print(f"report: {res.report}")
    console.print(f"results: {res.dir / 'results.md'}  ({res.seconds / 60:.1f} min)")
