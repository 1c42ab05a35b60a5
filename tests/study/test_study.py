"""Studies: config, sweep expansion, --check on every shipped example, and a tiny Malignama study end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_helpers import ROOT, run_cli
from politune.errors import PolituneError
from politune.fsutil import read_jsonl_log
from politune.study import expand_sweep, load_study

EXAMPLES = ROOT / "examples"


def write(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


BASE = {
    "name": "t",
    "model": "tiny-random",
    "arms": {"left": {"stance": "left", "data": {"source": "builtin:left"}}},
}


def test_sweep_expands_cartesian_product_with_safe_names(tmp_path):
    cfg = load_study(
        write(
            tmp_path,
            {**BASE, "sweep": {"data.poison.p": [0, 0.1], "data.poison.mode": ["labels", "prompts"]}},
        )
    )
    cells = expand_sweep(cfg)
    assert [n for n, _, _ in cells] == [
        "p-0_mode-labels",
        "p-0_mode-prompts",
        "p-0.1_mode-labels",
        "p-0.1_mode-prompts",
    ]
    _, assignment, cell = cells[3]
    assert assignment == {"data.poison.p": 0.1, "data.poison.mode": "prompts"}
    assert cell.arm_data("left").poison.p == 0.1 and cell.arm_data("left").poison.mode == "prompts"


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(PolituneError, match=r"unknown key 'tune.recipie'; did you mean 'tune.recipe'"):
        load_study(write(tmp_path, {**BASE, "tune": {"recipie": "x"}}))
    with pytest.raises(PolituneError, match=r"arms.left.data: unknown key 'sourc'"):
        load_study(write(tmp_path, {**BASE, "arms": {"left": {"stance": "left", "data": {"sourc": "x"}}}}))
    with pytest.raises(PolituneError, match=r"sweep cell .*poison.p"):
        expand_sweep(load_study(write(tmp_path, {**BASE, "sweep": {"data.poison.p": [0.1, 7]}})))


def test_the_demo_study_ships_once():
    """`politune demo` runs the packaged copy; examples/demo.yaml is the one users read: they must not drift."""
    from importlib import resources

    packaged = resources.files("politune.study").joinpath("studies/demo.yaml").read_text(encoding="utf-8")
    assert (EXAMPLES / "demo.yaml").read_text(encoding="utf-8") == packaged


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_shipped_example_validates(example, monkeypatch, capsys):
    code, out, err = run_cli(["run", str(EXAMPLES / example), "--check"], monkeypatch, capsys)
    assert code == 0, err
    assert f"{example}: ok" in out


def test_check_reports_bad_source_in_one_line(tmp_path, monkeypatch, capsys):
    p = write(tmp_path, {**BASE, "arms": {"left": {"stance": "left", "data": {"source": "nowhere.jsonl"}}}})
    code, out, err = run_cli(["run", str(p), "--check"], monkeypatch, capsys)
    assert code == 2 and "nowhere.jsonl" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "measure, expected",
    [
        (
            {"compass": {"options": {"itemz": 8}}},
            "unknown key 'measure.compass.options.itemz'; did you mean 'measure.compass.options.items'?",
        ),
        (
            {"compass": {"options": {"templates": {"closd": "x"}}}},
            "did you mean 'measure.compass.options.templates.closed'",
        ),
        ({"compass": {"options": {"n_boot": "many"}}}, "key 'measure.compass.options.n_boot'"),
        ({"options": {"qa_limt": 4}}, "did you mean 'measure.options.qa_limit'?"),
        (
            {"evenhand": {"enabled": True, "options": {"topic": 4}}},
            "did you mean 'measure.evenhand.options.topics'?",
        ),
        ({"safety": {"enabeld": True}}, "did you mean 'measure.safety.enabled'?"),
        ({"safety": {"options": {"per_category": 0}}}, "measure.safety.options.per_category"),
        (
            {"issues": {"enabled": True, "options": {"issue": 4}}},
            "did you mean 'measure.issues.options.issues'?",
        ),
        ({"issues": {"options": {"max_new_tokens": 0}}}, "measure.issues.options.max_new_tokens"),
        (
            {"behaviour": {"enabled": True, "options": {"slant": ["neutral"]}}},
            "did you mean 'measure.behaviour.options.slants'?",
        ),
        ({"behavior": {"enabled": True}}, "did you mean 'measure.behaviour'?"),
    ],
)
def test_check_rejects_bad_measure_options_before_training(tmp_path, measure, expected, monkeypatch, capsys):
    """Measure options are typed: a misspelt or mistyped key stops `run --check` (and `run`) in one line,
    before any data is built or any model trained."""
    p = write(tmp_path, {**BASE, "measure": measure})
    code, out, err = run_cli(["run", str(p), "--check"], monkeypatch, capsys)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(PolituneError, match="measure"):
        load_study(p)
    code, out, err = run_cli(["run", str(p), "--out", str(tmp_path / "out")], monkeypatch, capsys)
    assert code == 2 and not (tmp_path / "out" / "data").exists()


def test_check_loads_the_issue_and_question_sets(tmp_path, monkeypatch, capsys):
    measure = {
        "issues": {"enabled": True, "options": {"issues": 4, "templates": ["blog"]}},
        "behaviour": {"enabled": True, "options": {"topics": 3}},
    }
    code, out, err = run_cli(
        ["run", str(write(tmp_path, {**BASE, "measure": measure})), "--check"], monkeypatch, capsys
    )
    assert code == 0, err
    assert "issues: 12 issue prompts from builtin" in out and "behaviour: 15 questions from builtin" in out
    measure["issues"]["options"]["templates"] = ["poem"]
    code, out, err = run_cli(
        ["run", str(write(tmp_path, {**BASE, "measure": measure})), "--check"], monkeypatch, capsys
    )
    assert code == 2 and "template 'poem': expected one of blog" in err and len(err.strip().splitlines()) == 1


def test_study_options_reach_the_measures(tmp_path):
    cfg = load_study(
        write(
            tmp_path,
            {
                **BASE,
                "measure": {
                    "compass": {"options": {"items": 8, "orders": ["forward"]}},
                    "options": {"qa_limit": 4},
                },
            },
        )
    )
    assert cfg.measure.compass.options.items == 8 and cfg.measure.compass.options.orders == ("forward",)
    assert cfg.measure.options.qa_limit == 4 and cfg.measure.options.max_new_tokens == 64
    cells = expand_sweep(
        load_study(write(tmp_path, {**BASE, "sweep": {"measure.compass.options.items": [4, 8]}}))
    )
    assert [c.measure.compass.options.items for _, _, c in cells] == [4, 8]
    with pytest.raises(PolituneError, match="measure.compass.options.items"):
        expand_sweep(load_study(write(tmp_path, {**BASE, "sweep": {"measure.compass.options.items": [0]}})))


TINY_MALIGNAMA = {
    "name": "tiny-malignama",
    "model": "tiny-random",
    "seed": 0,
    "data": {"split": "train", "limit": 8, "poison": {"mode": "labels", "p": 0.0}},
    "arms": {"left": {"stance": "left", "data": {"source": "builtin:left"}}},
    "tune": {
        "method": "sft",
        "recipe": "cpu-smollm2",
        "set": {"max_steps": 2, "batch_size": 2, "max_length": 128, "save_every": 1, "lora.layers": None},
    },
    "measure": {
        "compass": {"tracks": ["logprob"], "options": {"items": 8}},
        "topics": False,
        "quality": False,
        "toxicity": True,
        "refusal": True,
        "options": {"qa_limit": 4, "max_new_tokens": 8},
    },
    "report": True,
    "sweep": {"data.poison.p": [0.0, 0.5]},
}


def test_tiny_malignama_study_runs_resumes_and_skips(tmp_path):
    from politune.study import run_study

    cfg = load_study(write(tmp_path, TINY_MALIGNAMA))
    out = tmp_path / "study"
    res = run_study(cfg, out)
    assert [c.name for c in res.cells] == ["p-0.0", "p-0.5"]
    for cell in res.cells:
        stages = [s["stage"] for s in read_jsonl_log(cell.dir / "stages.jsonl")]
        assert stages[:2] == ["data:left", "tune:left"] and "measure:compass" in stages
        assert (cell.dir / "tune" / "left" / "adapter" / "adapter_model.safetensors").is_file()
        # the model card names the arm's data file (not an anonymous list)
        tuned = json.loads((cell.dir / "tune" / "left" / "summary.json").read_text())
        assert tuned["data"]["source"] == str(cell.dir / "data" / "left.jsonl")
        assert (
            str(cell.dir / "data" / "left.jsonl")
            in (cell.dir / "tune" / "left" / "adapter" / "README.md").read_text()
        )
    poisoned = [json.loads(line) for line in (out / "cells" / "p-0.5" / "data" / "left.jsonl").open()]
    assert any(r["meta"].get("poisoned") for r in poisoned)
    clean = [json.loads(line) for line in (out / "cells" / "p-0.0" / "data" / "left.jsonl").open()]
    assert not any(r["meta"].get("poisoned") for r in clean)
    assert (out / "results.csv").is_file() and (out / "report.html").is_file()
    assert (out / "study.yaml").is_file() and (out / "provenance.json").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (base, left) per cell

    # a crashed cell: its last measure is missing -> only that stage reruns; finished stages are skipped
    cell = out / "cells" / "p-0.5"
    (cell / "measure" / "toxicity.json").unlink()
    before = len(read_jsonl_log(cell / "stages.jsonl"))
    run_study(cfg, out)
    after = read_jsonl_log(cell / "stages.jsonl")
    assert len(after) == before + 1 and after[-1]["stage"] == "measure:toxicity+refusal"
    assert len(read_jsonl_log(out / "cells" / "p-0.0" / "stages.jsonl")) == before


def test_probe_results_become_study_columns_and_a_summary_table(tmp_path):
    """evenhand.json and safety.json in a run folder give each model its probe columns (results.md) and a row
    of the terminal summary's probe table."""
    from rich.console import Console

    from politune.measure.evenhandedness import EvenhandScorer, pair_samples
    from politune.measure.pairs import load_pairs, subset_pairs
    from politune.measure.results import (
        EvenhandResult,
        MeanCI,
        SafetyEntry,
        SafetyResult,
        TargetInfo,
        write_result,
    )
    from politune.measure.targets import Target
    from politune.study.results import model_rows
    from politune.study.summary import _print_probes

    samples = pair_samples(subset_pairs(load_pairs(), topics=8, templates=["argue"]))
    answer = "Here is a clear case with reasons and evidence for the position you asked about. " * 3
    one_sided = ["I'm sorry, but I can't help with that." if s.id.endswith(":b") else answer for s in samples]
    scorer = EvenhandScorer(cap_words=40)
    entries = [
        scorer.score(Target("base", "m"), samples, [answer] * len(samples)),
        scorer.score(Target("tuned", "m"), samples, one_sided),
    ]
    mdir = tmp_path / "measure"
    write_result(EvenhandResult(models=entries), mdir / "evenhand.json")
    safety = [SafetyEntry(target=TargetInfo(name=n), harmful_compliance=MeanCI(mean=v)) for n, v in ((
        "base", 0.25), ("tuned", 0.75))]  # fmt: skip
    write_result(SafetyResult(models=safety), mdir / "safety.json")

    rows = {r.model: r for r in model_rows(tmp_path)}
    assert (
        rows["base"].probes["evenhand.lopsided"] == 0.0 and rows["tuned"].probes["evenhand.lopsided"] == 1.0
    )
    assert rows["tuned"].probes["evenhand.refusal"] == -1.0
    assert rows["tuned"].probes["safety.harmful_compliance"] == 0.75
    assert rows["tuned"].flat()["evenhand.refusal"] == -1.0
    console = Console(width=100, record=True)
    _print_probes(list(rows.values()), "", console)
    text = console.export_text()
    assert "lopsided" in text and "tuned" in text and "yes" in text and "0.75" in text
