"""Kill -9 and resume gives the same adapter as an uninterrupted run; `accelerate launch` with 2 CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tune import _one_thread, tiny_pairs  # noqa: F401  (autouse fixture: one intra-op thread)

OVERRIDES = [
    "max_steps=8",
    "batch_size=4",
    "max_length=96",
    "lora.layers=null",
    "lora.r=4",
    "lora.alpha=8",
    "save_every=2",
    "save_total_limit=2",
    "lr=5e-3",
    "warmup_steps=1",
]

CHILD = """
import json, sys, time
from politune.tune import TuneOptions, dpo, load_recipe
from politune.tune.trainer import PolituneDPOTrainer

pairs_file, out_dir, base, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
orig = PolituneDPOTrainer.training_step

def slow_step(self, *args, **kwargs):   # slow enough for the parent to kill it mid-run
    time.sleep(0.25)
    return orig(self, *args, **kwargs)

PolituneDPOTrainer.training_step = slow_step
recipe = load_recipe("cpu-smollm2", overrides=overrides)
dpo(base, json.load(open(pairs_file)), recipe, TuneOptions(out_dir=out_dir))
print("FINISHED")
"""


def _adapter_tensors(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter_dir / "adapter_model.safetensors")


def test_kill9_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir):
    from politune.tune import TuneOptions, dpo, load_recipe
    from politune.tune.trainer import list_checkpoints

    pairs = tiny_pairs(16)  # 4 steps per epoch: the resumed run crosses an epoch boundary
    cfg = load_recipe("cpu-smollm2", overrides=OVERRIDES)
    ref = dpo(str(tiny_model_dir), pairs, cfg, TuneOptions(out_dir=tmp_path / "straight"))

    pairs_file = tmp_path / "pairs.json"
    pairs_file.write_text(json.dumps(pairs))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "killed"
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pairs_file), str(out), str(tiny_model_dir), json.dumps(OVERRIDES)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 150
    try:
        while time.time() < deadline and proc.poll() is None:
            done = list_checkpoints(out / "checkpoints")
            if done and int(done[-1].name.split("-")[1]) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "the child finished before it could be killed: " + proc.stderr.read().decode()
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "adapter").exists() and not (out / "summary.json").exists()
    killed_at = int(list_checkpoints(out / "checkpoints")[-1].name.split("-")[1])
    assert 4 <= killed_at < 8

    res = dpo(str(tiny_model_dir), pairs, cfg, TuneOptions(out_dir=out, resume=True))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == f"checkpoint-{killed_at}" and summary["steps"] == 8
    a, b = _adapter_tensors(ref.adapter_dir), _adapter_tensors(res.adapter_dir)
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-4, f"resumed adapter differs from the uninterrupted one by {diff}"
    assert max(float(t.abs().max()) for k, t in a.items() if "lora_B" in k) > 1e-3  # it did train
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # rows after the checkpoint were dropped and re-made, none lost


@pytest.mark.timeout(240)
def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_model_dir):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({**p, "meta": {"split": "train"}}) + "\n" for p in tiny_pairs(8)))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "name: tiny-ddp\nmax_steps: 2\nbatch_size: 2\nmax_length: 96\nlr: 5.0e-3\n"
        "lora: {r: 4, alpha: 8}\nsave_every: 0\n"
    )
    out = tmp_path / "ddp"
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--multi_gpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "politune",
        "tune",
        "dpo",
        "--config",
        str(recipe),
        "--data",
        str(data),
        "--base",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--stance",
        "left",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=220, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hardware"]["processes"] == 2 and summary["steps"] == 2
    assert summary["hardware"]["backend"] == "gloo"
    assert summary["step0"]["ok"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2]  # one writer (rank 0)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_smollm2_cpu_recipe_one_step_step0_and_generate(tmp_path, smollm2_dir):
    """The real default model with the cpu-smollm2 recipe (top-8-layer LoRA, shared frozen layers): the step-0
    check holds exactly, and the adapter loads with PEFT and generates."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from politune.data import load
    from politune.tune import TuneOptions, dpo, load_recipe

    pairs = load("builtin:left", split="train")[:4]
    cfg = load_recipe(
        "cpu-smollm2", overrides=["max_steps=1", "batch_size=2", "max_length=96", "save_every=0"]
    )
    res = dpo(str(smollm2_dir), pairs, cfg, TuneOptions(out_dir=tmp_path / "smol", stance="left"))
    summary = json.loads((res.out_dir / "summary.json").read_text())
    assert summary["step0"]["ok"] and summary["step0"]["max_abs_logp_diff"] == 0.0
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir), res.adapter_dir)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Should taxes on the rich go up?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


class _FakeTrainer:
    """Just what AtomicCheckpointMixin uses of a Trainer; its save writes an empty checkpoint folder."""

    def __init__(self, out: Path, limit: int | None):
        from types import SimpleNamespace

        self.args = SimpleNamespace(output_dir=str(out), save_total_limit=limit, should_save=True)
        self.accelerator = SimpleNamespace(wait_for_everyone=lambda: None)
        self.state = SimpleNamespace(global_step=0)

    def _save_checkpoint(self, model, trial):
        (Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}").mkdir(parents=True)


@pytest.mark.parametrize(("limit", "kept"), [(2, [2, 3]), (None, [1, 2, 3])])
def test_atomic_checkpoints_rotate_to_the_limit_and_none_keeps_all(tmp_path, limit, kept):
    """save_total_limit as in Trainer: the newest N checkpoints stay; None keeps every one (it raised a
    TypeError)."""
    from politune.tune.trainer import AtomicCheckpointMixin, list_checkpoints

    class Saver(AtomicCheckpointMixin, _FakeTrainer):
        pass

    saver = Saver(tmp_path, limit)
    for step in (1, 2, 3):
        saver.state.global_step = step
        saver._save_checkpoint(None, None)
    assert [int(p.name.split("-")[1]) for p in list_checkpoints(tmp_path)] == kept
    assert saver.args.output_dir == str(tmp_path) and saver.args.save_total_limit == limit
    assert not (tmp_path / ".staging").exists()
