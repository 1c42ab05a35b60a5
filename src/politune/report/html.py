"""Render the report as one self-contained HTML page: inline CSS, charts as base64 PNG data URIs, no scripts,
no external fonts, stylesheets or images. Every piece of text from a result file is HTML-escaped."""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from politune.report.page import PROBE_CHARTS, Page
from politune.report.tables import SampleQuestion, Table, fmt
from politune.report.views import ReportData

EFFECT_TABLES = ("side_effects", "diagnostics", "agreement")
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.7em;margin:.2em 0 .1em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.sub{color:#555;margin:0 0 1em}
nav{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px 14px;margin:14px 0}
nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
.chart{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px;margin:10px 0;text-align:center}
.chart img{max-width:100%;height:auto}
.chart figcaption{color:#555;font-size:.9em;margin-top:6px;text-align:left}
table{border-collapse:collapse;background:#fff;margin:8px 0 4px;font-size:.86em;width:100%}
th,td{border:1px solid #ddd;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.good{background:#e3f4e1}td.bad{background:#fbe3e3}
.tablewrap{overflow-x:auto}
.note{color:#555;font-size:.85em;margin:2px 0 12px}
.missing{background:#fff8e1;border:1px solid #f0d98a;border-radius:6px;padding:8px 14px}
.missing li{margin:2px 0}
.ok{background:#eef8ee;border:1px solid #b9dfb9;border-radius:6px;padding:8px 14px}
.sample{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;margin:10px 0}
.answer{border-left:4px solid #ccc;padding:4px 10px;margin:6px 0;white-space:pre-wrap}
.answer b{display:block}
pre{background:#f4f4f4;border:1px solid #e0e0e0;padding:8px;overflow-x:auto;font-size:.82em;white-space:pre-wrap}
details{margin:6px 0}summary{cursor:pointer;color:#0b5cad}
code{background:#f0f0f0;padding:0 3px;border-radius:3px;font-size:.92em}
footer{color:#777;font-size:.8em;margin-top:40px}
"""


def _code(escaped: str) -> str:
    """`command` in an already escaped message -> <code>command</code>."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", escaped)


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _looks_numeric(cell: str) -> bool:
    c = cell.replace("−", "-").replace("%", "").split(" [")[0]
    try:
        float(c)
        return True
    except ValueError:
        return False


def render_table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = []
    for i, row in enumerate(t.rows):
        cls = t.classes[i] if i < len(t.classes) else []
        cells = []
        for j, c in enumerate(row):
            classes = [k for k in (("num" if _looks_numeric(c) else ""), cls[j] if j < len(cls) else "") if k]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f'<p class="note">{escape(t.note)}</p>' if t.note else ""
    return (
        f'<h3 id="t-{escape(t.key)}">{escape(t.title)}</h3><div class="tablewrap"><table><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def _chart(name: str, png: Path, caption: str) -> str:
    return (
        f'<figure class="chart" id="c-{escape(name)}"><img alt="{escape(caption)}" src="{data_uri(png)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _samples(samples: list[SampleQuestion], colours: dict[str, str]) -> str:
    out = []
    for s in samples:
        answers = "".join(
            f'<div class="answer" style="border-left-color:{escape(colours.get(name, "#ccc"))}"><b>{escape(name)}'
            f" (lean {escape(fmt(score))})</b>{escape(answer or '')}</div>"
            for name, score, answer in s.answers
        )
        out.append(
            f'<div class="sample"><b>{escape(s.topic)}</b> <span class="note">({escape(s.id)})</span>'
            f"<p>{escape(s.question)}</p>{answers}</div>"
        )
    return "".join(out)


def render_html(
    page: Page, charts: dict[str, Path], colours: dict[str, str], versions: dict[str, str]
) -> str:
    """The whole page as a string. ``charts`` maps chart name -> PNG path (embedded as data URIs)."""
    sections = _sections(page, charts, colours)
    sections.append(("provenance", "Provenance", _provenance(page.data, page.tables, versions)))
    title, data, generated = page.title, page.data, page.generated
    nav = "".join(f'<a href="#{sid}">{escape(h)}</a>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(h)}</h2>{html}</section>' for sid, h, html in sections)
    runs = ", ".join(str(d) for d in data.run_dirs)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{escape(title)}</h1><p class="sub">Built {escape(generated)} from {escape(runs)}. '
        f"All intervals are 95% bootstrap confidence intervals.</p><nav>{nav}</nav>{body}"
        f"<footer>politune report · self-contained: no scripts, no external resources.</footer>"
        f"</main></body></html>\n"
    )


def _sections(page: Page, charts: dict[str, Path], colours: dict[str, str]) -> list[tuple[str, str, str]]:
    """(id, heading, html) of every section but the provenance, in page order."""
    data, tables, captions, samples = page.data, page.tables, page.captions, page.samples
    sections: list[tuple[str, str, str]] = []

    if data.missing:
        items = "".join(f"<li>{_code(escape(m))}</li>" for m in data.missing)
        missing = f'<div class="missing"><b>Not in these results</b><ul>{items}</ul></div>'
    else:
        missing = (
            '<div class="ok">Every result kind was found: compass, topics, quality, toxicity, refusal and '
            "tuning trajectories.</div>"
        )
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    overview = missing + (f'<ul class="note">{notes}</ul>' if notes else "")
    if "targets" in tables:
        overview += render_table(tables["targets"])
    sections.append(("overview", "Overview", overview))

    if "compass" in charts or "compass" in tables:
        body = _chart("compass", charts["compass"], captions["compass"]) if "compass" in charts else ""
        body += "".join(render_table(tables[k]) for k in ("compass", "comparisons") if k in tables)
        sections.append(("compass", "Political compass", body))
    if "trajectory" in charts or "training" in charts or "runs" in tables:
        body = "".join(_chart(k, charts[k], captions[k]) for k in ("trajectory", "training") if k in charts)
        body += render_table(tables["runs"]) if "runs" in tables else ""
        sections.append(("training", "Training", body))
    if "topics" in charts:
        body = _chart("topics", charts["topics"], captions["topics"])
        body += render_table(tables["topics"]) if "topics" in tables else ""
        sections.append(("topics", "Topics", body))
    if any(k in tables for k in EFFECT_TABLES):
        body = "".join(render_table(tables[k]) for k in EFFECT_TABLES if k in tables)
        sections.append(("effects", "Side effects", body))
    if any(k in charts for k in PROBE_CHARTS):
        body = "".join(_chart(k, charts[k], captions[k]) for k in PROBE_CHARTS if k in charts)
        sections.append(("probes", "Probes: even-handedness, safety, issue stances, behaviour", body))
    if "winrate" in charts or "reward_accuracy" in charts:
        keys = ("winrate", "reward_accuracy")
        body = "".join(_chart(k, charts[k], captions[k]) for k in keys if k in charts)
        sections.append(("compred", "Community preference (ComPreD-style)", body))
    if samples:
        sections.append(
            (
                "samples",
                "Sample answers",
                '<p class="note">Held-out questions where the models differ '
                "most; base first, then each adapter and persona, with the scorer's lean.</p>"
                + _samples(samples, colours),
            )
        )
    return sections


def _provenance(data: ReportData, tables: dict[str, Table], versions: dict[str, str]) -> str:
    prov = render_table(tables["provenance"]) if "provenance" in tables else ""
    for path, text in data.configs.items():
        prov += (
            f"<details><summary>Resolved config: {escape(path)}</summary><pre>{escape(text)}</pre></details>"
        )
    for r in data.runs:
        if r.card_text:
            prov += (
                f"<details><summary>Model card: {escape(r.name)}/adapter/README.md</summary>"
                f"<pre>{escape(r.card_text)}</pre></details>"
            )
    if data.compass_settings:
        import json

        prov += (
            f"<details><summary>Compass settings</summary><pre>"
            f"{escape(json.dumps(data.compass_settings, indent=2, default=str))}</pre></details>"
        )
    vers = ", ".join(f"{k} {v}" for k, v in versions.items())
    prov += f'<p class="note">This report was built by politune with {escape(vers)}.</p>'
    return prov
