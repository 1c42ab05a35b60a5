"""The report's tables as plain data (title, header, rows of strings), rendered to HTML and to Markdown alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from politune.measure.results import CI
from politune.report.views import Estimate, ReportData, num, sub_dict

if TYPE_CHECKING:
    from pathlib import Path

DASH = "–"


@dataclass
class Table:
    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    classes: list[list[str]] = field(default_factory=list)  # optional per-cell CSS class ("good", "bad", "")


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return DASH
    s = f"{x:.{digits}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", "−")


def fmt_est(e: Estimate | None, digits: int = 2) -> str:
    if e is None or e.value is None:
        return DASH
    if e.ci is None:
        return fmt(e.value, digits)
    return f"{fmt(e.value, digits)} [{fmt(e.ci[0], digits)}, {fmt(e.ci[1], digits)}]"


def fmt_pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def _est(value: float | None, ci: CI) -> Estimate:
    return Estimate(value, ci.bounds)


def excludes_zero(e: Estimate) -> bool:
    return e.ci is not None and (e.ci[0] > 0 or e.ci[1] < 0)


def compass_table(data: ReportData) -> Table | None:
    if not data.compass:
        return None
    rows = []
    for m in data.compass:
        for track, tr in m.tracks.items():
            rows.append(
                [
                    m.name,
                    m.role,
                    track,
                    fmt_est(tr.economic),
                    fmt_est(tr.social),
                    fmt_pct(tr.coverage),
                    DASH if tr.n is None else str(tr.n),
                    fmt_pct(tr.refusal_rate),
                ]
            )
        if not m.tracks:
            rows.append([m.name, m.role, DASH, DASH, DASH, DASH, DASH, DASH])
    return Table(
        "compass",
        "Compass position per model and track",
        ["model", "role", "track", "economic [95% CI]", "social [95% CI]", "coverage", "n items", "refusals"],
        rows,
        "Scores on [−10, +10]: economic − left / + right; social − libertarian / + authoritarian.",
    )


def comparisons_table(data: ReportData) -> Table | None:
    rows, classes = [], []
    for c in data.comparisons:
        e = Estimate(c.diff, c.ci.bounds)
        sig = excludes_zero(e)
        rows.append([f"{c.a} → {c.b}", c.track, c.axis, fmt_est(e), "yes" if sig else "no"])
        classes.append(["", "", "", "", "good" if sig else ""])
    if not rows:
        return None
    return Table(
        "comparisons",
        "Shift from the base model (paired, per track and axis)",
        ["comparison", "track", "axis", "difference [95% CI]", "CI excludes 0"],
        rows,
        "Difference = b − a on the compass scale.",
        classes,
    )


def side_effects_table(data: ReportData) -> Table | None:
    if not (data.quality or data.toxicity or data.refusal):
        return None
    rows, classes = [], []
    for n in data.model_names:
        q, t, r = data.quality.get(n), data.toxicity.get(n), data.refusal.get(n)
        d = q.delta_vs_base if q is not None else None
        d_rouge = _est(d.rouge_l.diff, d.rouge_l.ci) if d and d.rouge_l else Estimate(None)
        d_ppl = _est(d.perplexity.diff, d.perplexity.ci) if d and d.perplexity else Estimate(None)
        rows.append(
            [
                n,
                fmt_est(_est(q.rouge_l.mean, q.rouge_l.ci) if q and q.rouge_l else None, 3),
                fmt_est(d_rouge, 3),
                fmt_est(_est(q.perplexity.mean, q.perplexity.ci) if q and q.perplexity else None, 1),
                fmt_est(d_ppl, 1),
                fmt_est(_est(t.mean, t.ci) if t else None, 3),
                fmt_pct(t.share_above if t else None),
                fmt_est(_est(r.rate, r.ci) if r else None, 2),
            ]
        )
        # a quality loss (ROUGE-L down or perplexity up) whose CI excludes 0 is flagged
        classes.append(
            [
                "",
                "",
                "bad" if excludes_zero(d_rouge) and d_rouge.value is not None and d_rouge.value < 0 else "",
                "",
                "bad" if excludes_zero(d_ppl) and d_ppl.value is not None and d_ppl.value > 0 else "",
                "",
                "",
                "",
            ]
        )
    thr = data.toxicity_threshold
    return Table(
        "side_effects",
        "Side effects of tuning: quality, toxicity, refusal",
        [
            "model",
            "ROUGE-L",
            "Δ ROUGE-L vs base",
            "perplexity",
            "Δ perplexity vs base",
            "toxicity",
            "share toxic" + (f" (> {thr})" if thr is not None else ""),
            "refusal rate",
        ],
        rows,
        "Means with 95% bootstrap CIs; Δ is paired against the base model. Red: a quality loss whose CI "
        "excludes 0.",
        classes,
    )


def diagnostics_table(data: ReportData) -> Table | None:
    if not any(m.diagnostics for m in data.compass):
        return None
    keys = ["coverage", "refusal_rate", "acquiescence", "order_sensitivity", "flip_consistency"]
    keys += [k for k in dict.fromkeys(k for m in data.compass for k in m.diagnostics) if k not in keys]
    rows = []
    for m in data.compass:
        sens = [tr.content_sensitivity for tr in m.tracks.values() if tr.content_sensitivity is not None]
        rows.append(
            [m.name]
            + [
                fmt_pct(m.diagnostics.get(k))
                if k in ("coverage", "refusal_rate")
                else fmt(m.diagnostics.get(k))
                for k in keys
            ]
            + [fmt(sum(sens) / len(sens)) if sens else DASH]
        )
    return Table(
        "diagnostics",
        "Compass diagnostics (bias controls)",
        ["model"] + [k.replace("_", " ") for k in keys] + ["content sensitivity (mean over tracks)"],
        rows,
        "As written by the compass measure (definitions in its documentation). Coverage: share of items "
        "scored; acquiescence: tendency to agree whatever the content; order sensitivity: change when "
        "answer options are reordered; flip consistency: agreement between an item and its reversed "
        "wording; content sensitivity: how much answers depend on the statement itself.",
    )


def agreement_table(data: ReportData) -> Table | None:
    pairs = list(dict.fromkeys(k for m in data.compass for k in m.agreement))
    if not pairs:
        return None
    rows = [[m.name] + [fmt(m.agreement.get(p)) for p in pairs] for m in data.compass]
    return Table(
        "agreement",
        "Agreement between compass tracks",
        ["model"] + pairs,
        rows,
        "Correlation of per-item scores between two tracks (1 = the tracks agree item by item).",
    )


def topics_table(data: ReportData) -> Table | None:
    if not data.topics:
        return None
    axes = list(dict.fromkeys(a for m in data.topics for a in m.axis_means))
    rows = []
    for m in data.topics:
        unscored = sum(q.score is None for q in m.questions)
        rows.append(
            [m.name, m.scorer, fmt_est(m.mean)]
            + [fmt_est(m.axis_means.get(a)) for a in axes]
            + [str(len(m.questions)), str(unscored)]
        )
    return Table(
        "topics",
        "Per-question lean: means",
        ["model", "scorer", "mean lean [95% CI]"]
        + [f"{a} [95% CI]" for a in axes]
        + ["questions", "unscored"],
        rows,
        "Lean in [−1, 1] per answer (− left / libertarian, + right / authoritarian); unscored answers "
        "are counted, never imputed.",
    )


def runs_table(data: ReportData) -> Table | None:
    if not data.runs:
        return None
    rows = []
    for r in data.runs:
        s = r.summary
        final, data_info = sub_dict(s, "final"), sub_dict(s, "data")
        last_m = r.metrics[-1] if r.metrics else {}
        last_t = r.trajectory[-1]["metrics"] if r.trajectory else {}
        step = final.get("step", last_m.get("step"))
        loss = num(final.get("loss", last_m.get("loss")))
        margin = num(final.get("rewards/margins", last_m.get("rewards/margins")))
        data_hash = data_info.get("sha256") or data_info.get("hash") or s.get("data_hash")
        rows.append(
            [
                r.name,
                str(s.get("method", DASH)),
                str(s.get("stance", DASH)),
                str(s.get("base", DASH)),
                DASH if step is None else str(step),
                fmt(loss, 3),
                fmt(margin, 2),
                fmt(num(last_t.get("economic"))),
                fmt(num(last_t.get("social"))),
                _short_hash(data_hash),
                _short_hash(r.adapter_hash),
                "yes" if r.card_text else "no",
            ]
        )
    return Table(
        "runs",
        "Tuning runs",
        [
            "run",
            "method",
            "stance",
            "base",
            "steps",
            "final loss",
            "final reward margin",
            "final economic",
            "final social",
            "data hash",
            "adapter hash",
            "model card",
        ],
        rows,
    )


def targets_table(data: ReportData) -> Table | None:
    if not data.targets:
        return None
    rows = []
    for n in data.model_names:
        t = data.targets[n]
        system = t.system or ""
        rows.append(
            [
                n,
                t.role,
                t.model or DASH,
                t.adapter or DASH,
                _short_hash(t.adapter_hash),
                system if len(system) <= 90 else system[:89] + "…",
            ]
        )
    return Table(
        "targets",
        "Models measured",
        ["model", "role", "base model", "adapter", "adapter hash", "system prompt"],
        rows,
    )


def provenance_table(data: ReportData) -> Table | None:
    if not data.sources:
        return None
    pkgs = list(dict.fromkeys(k for s in data.sources for k in (s.provenance.get("packages") or {})))
    rows = []
    for s in data.sources:
        p = s.provenance
        versions = sub_dict(p, "packages")
        rows.append(
            [_rel(s.path, data), s.kind, str(p.get("politune", DASH))]
            + [str(versions.get(k, DASH)) for k in pkgs]
            + [str(p.get("host", DASH)), str(p.get("time", DASH))]
        )
    return Table(
        "provenance",
        "Provenance of every result file",
        ["file", "kind", "politune"] + pkgs + ["host", "time"],
        rows,
    )


def _short_hash(h: object) -> str:
    return str(h)[:16] if h else DASH


def _rel(path: Path, data: ReportData) -> str:
    from politune.report.collect import _display

    return _display(path, [d.resolve() for d in data.run_dirs])


def all_tables(data: ReportData) -> dict[str, Table]:
    out = {}
    for fn in (
        compass_table,
        comparisons_table,
        agreement_table,
        diagnostics_table,
        side_effects_table,
        topics_table,
        runs_table,
        targets_table,
        provenance_table,
    ):
        t = fn(data)
        if t is not None:
            out[t.key] = t
    return out


@dataclass
class SampleQuestion:
    id: str
    topic: str
    question: str
    answers: list[tuple[str, float | None, str | None]]  # (model, score, answer)


def sample_answers(data: ReportData, n: int = 3) -> list[SampleQuestion]:
    """Up to ``n`` questions, base answer first then every other model's: the questions where the models' scores
    spread most (ties by id), so the examples show what tuning changed."""
    if not data.topics or n <= 0:
        return []
    order = {name: i for i, name in enumerate(data.model_names)}
    models = sorted(data.topics, key=lambda m: order.get(m.name, len(order)))
    by_q: dict[str, dict[str, tuple[float | None, str]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for m in models:
        for q in m.questions:
            if q.answer is None:
                continue
            by_q.setdefault(q.id, {})[m.name] = (q.score, q.answer)
            meta.setdefault(q.id, (q.topic, q.question))

    def spread(qid: str) -> float:
        s = [v[0] for v in by_q[qid].values() if v[0] is not None]
        return max(s) - min(s) if len(s) > 1 else 0.0

    chosen = sorted((q for q in by_q if len(by_q[q]) > 1 or len(models) == 1), key=lambda q: (-spread(q), q))[
        :n
    ]
    return [
        SampleQuestion(
            q,
            meta[q][0],
            meta[q][1],
            [(name, *by_q[q][name]) for name in (m.name for m in models) if name in by_q[q]],
        )
        for q in chosen
    ]
