"""Render the report's summary as Markdown (GitHub-flavoured tables, image links relative to the file)."""

from __future__ import annotations

from politune.report.page import PROBE_CHARTS, Page
from politune.report.tables import Table, fmt


def _safe(text: str) -> str:
    """Result text must not become markup: angle brackets are escaped (raw HTML in Markdown renders)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    return _safe(text).replace("|", "\\|").replace("\n", " ")


def render_table_md(t: Table) -> str:
    lines = [
        f"### {t.title}",
        "",
        "| " + " | ".join(_cell(h) for h in t.header) + " |",
        "|" + "|".join("---" for _ in t.header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def _quote(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return _safe(text if len(text) <= limit else text[: limit - 1] + "…")


def render_markdown(page: Page, images: dict[str, tuple[str, str]]) -> str:
    """``images``: chart name -> (PNG file name, SVG file name), relative to where the Markdown is written."""
    title, data, tables, captions, samples, generated = (
        page.title,
        page.data,
        page.tables,
        page.captions,
        page.samples,
        page.generated,
    )
    out = [
        f"# {title}",
        "",
        f"Built {generated} from {', '.join(str(d) for d in data.run_dirs)}. All intervals are "
        "95% bootstrap confidence intervals.",
        "",
    ]
    if data.missing:
        out += ["**Not in these results:**", ""] + [f"- {m}" for m in data.missing] + [""]
    for n in data.notes:
        out.append(f"- note: {n}")
    if "targets" in tables:
        out.append(render_table_md(tables["targets"]))

    def chart(name: str) -> None:
        if name in images:
            png, svg = images[name]
            out.extend([f"![{captions[name]}]({png})", "", f"_{captions[name]}_ ([SVG]({svg}))", ""])

    sections = [
        ("Political compass", ["compass"], ["compass", "comparisons"]),
        ("Training", ["trajectory", "training"], ["runs"]),
        ("Topics", ["topics"], ["topics"]),
        ("Side effects", [], ["side_effects", "diagnostics", "agreement"]),
        ("Probes: even-handedness, safety, issue stances, behaviour", list(PROBE_CHARTS), []),
        ("Community preference (ComPreD-style)", ["winrate", "reward_accuracy"], []),
    ]
    for heading, charts, keys in sections:
        if not any(c in images for c in charts) and not any(k in tables for k in keys):
            continue
        out += [f"## {heading}", ""]
        for c in charts:
            chart(c)
        out += [render_table_md(tables[k]) for k in keys if k in tables]
    if samples:
        out += ["## Sample answers", ""]
        for s in samples:
            out += [f"**{s.topic}** ({s.id}): {_quote(s.question)}", ""]
            out += [
                f"- **{name}** (lean {fmt(score)}): {_quote(answer or '')}"
                for name, score, answer in s.answers
            ]
            out.append("")
    if "provenance" in tables:
        out += ["## Provenance", "", render_table_md(tables["provenance"])]
    return "\n".join(out).rstrip() + "\n"
