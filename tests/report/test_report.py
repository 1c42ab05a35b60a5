"""Report pillar: reading result folders, charts, the self-contained HTML page, the Markdown summary, the CLI,
and a render of the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import CHROMIUM_FLAGS, FIXTURES
from politune.errors import PolituneError
from politune.report import build_report, collect, plot_compass, plot_topics, plot_trajectory

REPORT_FIXTURES = FIXTURES / "report"
FULL, PARTIAL = REPORT_FIXTURES / "full", REPORT_FIXTURES / "partial"


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "study.html"
    return build_report([FULL], out, title="Fixture study")


@pytest.fixture(scope="module")
def partial_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "partial.html"
    return build_report([PARTIAL], out)


# ------------------------------------------------------------------------------------------------ collect


def test_collect_reads_every_result_kind():
    data = collect([FULL])
    assert data.model_names == ["base", "left", "right", "socialist"]
    assert {m.name: m.role for m in data.compass} == {
        "base": "base",
        "left": "adapter",
        "right": "adapter",
        "socialist": "persona",
    }
    base = next(m for m in data.compass if m.name == "base")
    assert set(base.tracks) == {"logprob", "choice", "open"}
    assert base.tracks["logprob"].economic.value == pytest.approx(-2.1)
    assert base.tracks["logprob"].economic.ci == pytest.approx((-2.8, -1.4))
    assert base.diagnostics["acquiescence"] > 0 and "logprob~choice" in base.agreement
    assert sorted(r.name for r in data.runs) == ["tune-left", "tune-right"]
    left = next(r for r in data.runs if r.name == "tune-left")
    assert left.stance == "left" and len(left.trajectory) == 7 and left.trajectory[-1]["step"] == 60
    assert left.card_text.startswith("# politune adapter") and left.config_text
    assert len(data.topics) == 4 and len(data.topics[0].questions) == 10
    assert set(data.quality) == set(data.toxicity) == set(data.refusal) == set(data.model_names)
    assert {s.kind for s in data.sources} == {"compass", "topics", "quality", "toxicity", "refusal", "tune"}
    assert data.missing == []


def test_collect_partial_says_what_is_missing():
    data = collect([PARTIAL])
    assert [m.name for m in data.compass] == ["base", "left"]
    text = "\n".join(data.missing)
    for what in ("topics", "quality", "toxicity", "refusal", "trajectories", "config", "diagnostics"):
        assert what in text, what
    assert len(data.runs) == 1 and data.runs[0].trajectory == [] and data.runs[0].metrics


def test_collect_is_tolerant_of_other_writers(tmp_path):
    """Extra keys, missing optional keys, nulls, nested metric dicts and a torn last log line all still read."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "compass.json").write_text(
        json.dumps(
            {
                "kind": "compass",
                "future_key": 1,
                "models": [
                    {
                        "target": {"name": "base", "model": "m"},
                        "new_per_model_key": [1],
                        "tracks": {
                            "logprob": {"economic": {"score": 1.0}, "social": {"score": None, "ci": [0, 1]}}
                        },
                    },
                    {
                        "target": {"name": "model2"},
                        "tracks": {
                            "logprob": {
                                "economic": {"score": -3, "ci": [-4, -2]},
                                "social": {"score": -1, "ci": [-2, 0]},
                            }
                        },
                    },
                ],
            }
        )
    )
    run = tmp_path / "a" / "run"
    run.mkdir()
    (run / "trajectory.jsonl").write_text(
        json.dumps({"step": 0, "metrics": {"economic": {"score": -1, "ci": [-2, 0]}, "social": 0.5}})
        + "\n"
        + json.dumps({"step": 5, "metrics": {"economic": -2, "social": "n/a"}})
        + "\n"
        + json.dumps({"metrics": {"economic": 3}})
        + "\n"  # no step: skipped
        + '{"step": 10, "metr'
    )  # torn by a kill -9
    (tmp_path / "a" / "tokenizer.json").write_text("{not json")  # not ours: never opened
    (tmp_path / "a" / "notes.json").write_text("[1, 2]")  # not ours: ignored
    data = collect([tmp_path / "a"])
    assert [m.name for m in data.compass] == ["base", "model2"]
    assert data.compass[0].tracks["logprob"].social.value is None
    assert [r["step"] for r in data.runs[0].trajectory] == [0, 5]
    assert data.runs[0].trajectory[0]["metrics"]["economic_ci"] == [-2.0, 0.0]
    fig = plot_compass(data.compass)  # a point without a social score is left out, not imputed
    assert fig.axes[0].get_xlabel()


def test_same_model_name_in_two_folders_is_kept_apart(tmp_path):
    a, b = tmp_path / "cell-a", tmp_path / "cell-b"
    for d in (a, b):
        shutil.copytree(PARTIAL, d)
    data = collect([a, b])
    assert [m.name for m in data.compass] == ["base@cell-a", "left@cell-a", "base@cell-b", "left@cell-b"]
    assert any("appears in results from 2 folders" in n for n in data.notes)
    assert sorted(r.name for r in data.runs) == ["cell-a/tune-left", "cell-b/tune-left"]
    fig = plot_compass(data.compass)  # each adapter's arrow starts at the base of its own folder
    arrows = [c for c in fig.axes[0].get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 2 and {a.xyann for a in arrows} == {(-2.1, -1.6)}


def test_a_study_with_cells_joins_rows_per_cell(tmp_path):
    """A study folder: cells/NAME/measure/*.json and cells/NAME/tune/ARM/: names are qualified by cell, and each
    cell's quality rows join its own compass rows."""
    for cell in ("lr-1e-4", "lr-5e-5"):
        shutil.copytree(FULL / "measure", tmp_path / "cells" / cell / "measure")
        shutil.copytree(FULL / "tuning" / "tune-left", tmp_path / "cells" / cell / "tune" / "left")
    data = collect([tmp_path])
    assert {m.name for m in data.compass} == {
        f"{n}@{c}" for n in ("base", "left", "right", "socialist") for c in ("lr-1e-4", "lr-5e-5")
    }
    assert set(data.quality) == set(data.toxicity) == {m.name for m in data.compass}
    assert {c.b for c in data.comparisons} == {
        f"{n}@{c}" for n in ("left", "right", "socialist") for c in ("lr-1e-4", "lr-5e-5")
    }
    assert sorted(r.name for r in data.runs) == ["lr-1e-4/left", "lr-5e-5/left"]
    assert not [m for m in data.missing if "no result for model" in m]


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"kind": "compass", "models": [\n  {"target": }', r"compass\.json:2: invalid JSON"),
        ("[1, 2]", r"compass\.json: expected a JSON object"),
        ('{"kind": "compass", "models": {"base": 1}}', r"compass\.json: models: expected a list"),
        ('{"kind": "compass", "models": ["not a model"]}', r"compass\.json: models\[0\]: expected an object"),
        ('{"kind": "compass", "models": [{"tracks": {}}]}', r"compass\.json: models\[0\]\.target: missing"),
        (
            '{"kind": "compass", "models": [{"target": {"name": "b"}, "tracks": {"logprob": {"economic": {"score": "high"'
            "}}}}]}",
            r"compass\.json: models\[0\]\.tracks\.logprob\.economic\.score: expected a number \(got \"high\"\)",
        ),
        (
            '{"kind": "compass", "models": [{"target": {"name": "b"}, "tracks": {"logprob": "not a dict"}}]}',
            r"compass\.json: models\[0\]\.tracks\.logprob: expected an object",
        ),
    ],
)
def test_bad_result_file_is_a_clear_error_and_writes_nothing(tmp_path, content, expected):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "compass.json").write_text(content)
    out = tmp_path / "out" / "r.html"
    with pytest.raises(PolituneError, match=expected):
        build_report([tmp_path / "run"], out)
    assert not out.exists() and not (tmp_path / "out" / "r_files").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(PolituneError, match="run folder not found"):
        build_report([tmp_path / "nope"], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolituneError, match="no politune results found"):
        build_report([tmp_path / "empty"], tmp_path / "r.html")
    with pytest.raises(PolituneError, match="is a directory"):
        build_report([PARTIAL], tmp_path)
    with pytest.raises(PolituneError, match="no run folder"):
        build_report([], tmp_path / "r.html")


# ------------------------------------------------------------------------------------------------ charts


def test_plot_compass_alone_from_a_file():
    fig = plot_compass(FULL / "measure" / "compass.json")
    ax = fig.axes[0]
    assert "Economic" in ax.get_xlabel() and "Social" in ax.get_ylabel()
    assert ax.get_xlim() == (-10, 10) and ax.get_ylim() == (-10, 10)
    texts = {t.get_text() for t in ax.texts}
    assert {"Authoritarian left", "Authoritarian right", "Libertarian left", "Libertarian right"} <= texts
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "left (adapter)" in legend and "socialist (persona)" in legend
    assert {"track: logprob", "track: choice", "track: open"} <= set(legend)
    # one arrow from the base to each of the three non-base models
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 3
    # 4 models x 3 tracks points, each with x and y error bars
    assert len(ax.containers) == 12 and all(c.has_xerr and c.has_yerr for c in ax.containers)


def test_plot_compass_into_a_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    assert plot_compass(json.loads((PARTIAL / "compass.json").read_text()), ax=ax, title=None) is fig


def test_plot_trajectory_and_topics_alone():
    fig = plot_trajectory({"left": FULL / "tuning" / "tune-left", "right": FULL / "tuning" / "tune-right"})
    assert [a.get_title() for a in fig.axes] == ["Economic", "Social"]
    assert all(a.get_xlabel() == "Training step" and a.get_ylabel() for a in fig.axes)
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["left", "right"]
    assert len(fig.axes[0].lines) >= 2
    fig = plot_topics(FULL / "measure" / "topics.json")
    bars, means = fig.axes
    assert len(bars.patches) == 4 * 10 and bars.get_xlim() == (-1.05, 1.05)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "base",
        "left",
        "right",
        "socialist",
        "unscored",
    ]
    assert [t.get_text() for t in means.get_yticklabels()] == ["base", "left", "right", "socialist"]
    with pytest.raises(PolituneError, match="not found"):
        plot_topics(FULL / "nope.json")


# ------------------------------------------------------------------------------------------------ the report


def test_full_report_files(full_report):
    r = full_report
    assert r.html.is_file() and r.markdown.is_file()
    assert set(r.charts) == {"compass", "trajectory", "training", "topics"}
    from PIL import Image

    for name, paths in r.charts.items():
        with Image.open(paths["png"]) as im:
            assert im.width > 800 and im.height > 300, name
        svg = paths["svg"].read_text()
        assert (
            svg.lstrip().startswith("<?xml")
            and "<svg" in svg
            and "http://"
            not in svg.split("<svg", 1)[1]
            .replace("http://www.w3.org", "")
            .replace("http://purl.org", "")
            .replace("http://creativecommons.org", "")
        ), name
    assert r.models == ["base", "left", "right", "socialist"] and r.missing == []
    assert oct(r.html.stat().st_mode & 0o044) == oct(0o044 & ~_umask())  # shareable like any other file


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_full_report_html_is_self_contained(full_report):
    html = full_report.html.read_text()
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r"<script|<link|@import|url\(|<iframe|<object", html, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html, re.I)
    # every section is there, with its numbers
    for heading in (
        "Political compass",
        "Training",
        "Topics",
        "Side effects",
        "Sample answers",
        "Provenance",
    ):
        assert f">{heading}</h2>" in html
    assert "−2.10 [−2.80, −1.40]" in html  # base, logprob, economic
    assert "−0.027 [−0.047, −0.007]" in html and 'class="num bad"' in html  # a flagged quality loss
    assert "acquiescence" in html and "logprob~choice" in html and "order sensitivity" in html
    assert "3f9a0c1d2e4b5a67" in html and "9c2f4e1a7b3d5e60" in html  # adapter and data hashes
    assert "Resolved config: full/tuning/tune-left/config.yaml" in html and "Model card: tune-left" in html
    assert "transformers" in html and "fixture-host" in html
    # result text is escaped, never markup
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_sample_answers_show_base_then_each_model(full_report):
    html = full_report.html.read_text()
    samples = html.split('id="samples"')[1].split("</section>")[0]
    assert samples.count('class="sample"') == 3
    first = samples.split('class="sample"')[1]
    names = re.findall(r"<b>(\w+) \(lean", first)
    assert names == ["base", "left", "right", "socialist"]


def test_markdown_summary(full_report):
    md = full_report.markdown.read_text()
    assert md.startswith("# Fixture study")
    for name in ("compass", "trajectory", "training", "topics"):
        assert f"]({name}.png)" in md and f"]({name}.svg)" in md
    assert "| model | role | track | economic [95% CI] |" in md
    assert "## Sample answers" in md and "## Provenance" in md
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_partial_report_renders_what_it_has(partial_report):
    r = partial_report
    assert set(r.charts) == {"compass", "training"}  # no trajectory, no topics
    html = r.html.read_text()
    assert "Not in these results" in html and "no trajectory.jsonl" in html and "no topics.json" in html
    assert (
        ">Political compass</h2>" in html
        and ">Sample answers</h2>" not in html
        and ">Topics</h2>" not in html
    )
    md = r.markdown.read_text()
    assert "**Not in these results:**" in md and "compass.png" in md and "topics.png" not in md


def test_failed_build_keeps_the_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    build_report([PARTIAL], out)
    before = out.read_bytes()
    from politune.report import charts

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(charts, "save_figure", boom)
    with pytest.raises(OSError):
        build_report([FULL], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == [
        "compass.png",
        "compass.svg",
        "report.md",
        "training.png",
        "training.svg",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_quality_delta_with_a_ci_but_no_diff_still_reports(tmp_path):
    """Every piece of a result is optional: a delta written with its CI but without its value is shown as a
    dash and not flagged (it raised a TypeError)."""
    (tmp_path / "q").mkdir()
    delta = {"rouge_l": {"ci": [-0.05, -0.01]}, "perplexity": {"ci": [1.0, 2.0]}}
    models = [
        {"target": {"name": "base"}, "rouge_l": {"mean": 0.2}},
        {"target": {"name": "x", "adapter": "a"}, "rouge_l": {"mean": 0.1}, "delta_vs_base": delta},
    ]
    (tmp_path / "q" / "quality.json").write_text(json.dumps({"kind": "quality", "models": models}))
    html = build_report([tmp_path / "q"], tmp_path / "q.html").html.read_text()
    assert ">Side effects</h2>" in html and 'class="num bad"' not in html


def test_odd_but_valid_results_still_report(tmp_path):
    """Quality only with NaN values, topics without questions or scores, a trajectory of non-compass metrics and
    a metrics log with a step-less row: each folder reports what it has."""
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "quality.json").write_text(
        json.dumps(
            {
                "kind": "quality",
                "models": [
                    {"target": {"name": "base"}, "rouge_l": {"mean": 0.2}},
                    {
                        "target": {"name": "x", "adapter": "a"},
                        "perplexity": {"mean": float("nan"), "ci": [float("nan"), 1]},
                    },
                ],
            }
        )
    )
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "topics.json").write_text(
        json.dumps(
            {
                "kind": "topics",
                "models": [
                    {"target": {"name": "base"}, "mean": 0.1, "questions": []},
                    {
                        "target": {"name": "y", "system": "persona"},
                        "questions": [
                            {"id": "a", "topic": "t", "axis": "social", "question": "q?", "score": None}
                        ],
                    },
                ],
            }
        )
    )
    (tmp_path / "r" / "run").mkdir(parents=True)
    (tmp_path / "r" / "run" / "trajectory.jsonl").write_text(
        '{"step": 1, "metrics": {"lean": 0.2, "acc": 0.5}}\n{"step": 2, "metrics": {"lean": 0.4}}\n'
    )
    (tmp_path / "r" / "run" / "metrics.jsonl").write_text('{"loss": 1.0}\n{"step": 2, "loss": 0.5}\n')
    r = build_report([tmp_path / "q"], tmp_path / "q.html")
    assert r.charts == {} and "compass" in r.missing[0]
    html = r.html.read_text()
    assert ">Side effects</h2>" in html and "0.200" in html
    r = build_report([tmp_path / "q", tmp_path / "t", tmp_path / "r"], tmp_path / "all.html")
    assert set(r.charts) == {"trajectory", "training", "topics"}
    assert set(r.models) == {"base@q", "base@t", "x", "y"}


# ------------------------------------------------------------------------------------------------ CLI


def _cli(monkeypatch, capsys, *args):
    from politune.cli import main

    monkeypatch.setattr(sys, "argv", ["politune", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.html"
    code, stdout, stderr = _cli(monkeypatch, capsys, "report", str(PARTIAL), "-o", str(out), "--json")
    assert code == 0 and "missing: topics" in stderr
    result = json.loads(stdout)
    assert result["html"] == str(out) and out.is_file() and set(result["charts"]) == {"compass", "training"}
    code, stdout, stderr = _cli(monkeypatch, capsys, "report", str(tmp_path / "nope"), "-o", str(out))
    assert code == 2 and "error:" in stderr and "run folder not found" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------------------------------------ browser


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    )


@pytest.mark.browser
def test_report_renders_in_headless_chromium(full_report, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (`make browser` installs it with apt)")
    shot = tmp_path / "shot.png"
    cmd = [
        exe,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        full_report.html.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import numpy as np
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        px = np.asarray(im.convert("RGB").resize((320, 500)), dtype=int).reshape(-1, 3)
    # "ink": anything that is neither the page background (#fafafa) nor white panels
    ink = np.minimum(np.abs(px - 250).max(axis=1), np.abs(px - 255).max(axis=1)) > 12
    assert ink.mean() > 0.15, f"page looks blank: {ink.mean():.1%} non-background pixels"
    assert len({tuple(c) for c in px // 16}) > 40, "page has too few colours to hold the charts"
    # the compass chart drew: its shaded quadrants are on screen (light red and light blue areas)
    r, g, b = px.T
    red = int(((r > 235) & (g > 200) & (g < 230) & (b > 200) & (b < 230)).sum())
    blue = int(((b > 225) & (g > 215) & (g < 240) & (r > 205) & (r < 230)).sum())
    assert red > 1000 and blue > 1000, (red, blue)


def test_judge_notes_name_each_reader_with_what_it_read():
    """The open track and the topic lean may be read by different scorers: each gets its own validated line."""

    from politune.measure.results import CompassResult, TopicsResult
    from politune.report.collect import _judge_notes

    valid = {"items": "compass", "axes": {"economic": {"sign_accuracy": {"value": 0.67}}}}
    compass = CompassResult(settings={"scorer": "reader-a", "scorer_validation": valid})
    topics = TopicsResult(scorer="scorer-b")
    notes = _judge_notes([("c", compass, Path("c")), ("t", topics, Path("t"))])
    assert notes[0].startswith("Open-track leans read by reader-a") and "compass answers" in notes[0]
    assert notes[1].startswith("Topic leans read by scorer-b, NOT validated")
    same = _judge_notes([("c", compass, Path("c")), ("t", TopicsResult(scorer="reader-a"), Path("t"))])
    assert len(same) == 1 and same[0].startswith("Open-track and topic leans read by reader-a")
