"""tune pillar: losses (hand-computed), config/recipes, bad input, DPO / SFT->DPO on the tiny model, step-0 check,
atomic checkpoints, outputs, trajectory, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import ROOT
from politune.errors import PolituneError
from politune.hardware import dtype_name, pick_dtype
from politune.tune import TuneConfig, TuneOptions, dpo, load_recipe, sft_dpo
from politune.tune.config import LOSSES, LossSpec
from politune.tune.losses import preference_loss, step0_expected

# --------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny model is far too small for intra-op threads; on a shared, loaded machine two OpenMP threads
    wait on each other at every op (measured 3x slower). Restored after this module."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TOPICS = [
    "the minimum wage",
    "taxes on high earners",
    "public healthcare",
    "rent control",
    "free trade",
    "labour unions",
    "welfare benefits",
    "business regulation",
]


def tiny_pairs(n: int = 16) -> list[dict]:
    """PreferencePair-shaped dicts: a left answer preferred over a right one."""
    out = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        out.append(
            {
                "id": f"p{i}",
                "prompt": f"What do you think about {t}?",
                "chosen": f"The government should act on {t} so that work pays and people are protected.",
                "rejected": f"Markets handle {t} best; lower taxes and less regulation help everyone grow.",
            }
        )
    return out


def tiny_cfg(*overrides: str) -> TuneConfig:
    base = [
        "max_steps=4",
        "batch_size=4",
        "max_length=96",
        "lora.layers=null",
        "lora.r=4",
        "lora.alpha=8",
        "save_every=0",
        "lr=5e-3",
        "sft.max_steps=3",
        "sft.lr=5e-3",
        "sft_weight=0",
    ]  # plain DPO unless asked
    return load_recipe("cpu-smollm2", overrides=base + list(overrides))


def logps_of(model, tok, pairs, adapter_ctx=None):
    """Summed chosen log-probs per pair under ``model`` (for checking which model a reference is)."""
    from politune.tune.trainer import completion_logps

    rows = []
    for p in pairs:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        full = tok.apply_chat_template(
            [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["chosen"]}],
            tokenize=False,
        )
        pi = tok(prompt, add_special_tokens=False)["input_ids"]
        fi = tok(full, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([fi])
        cm = torch.zeros_like(ids)
        cm[0, len(pi) :] = 1
        with torch.no_grad():
            lp, _ = completion_logps(model, ids, torch.ones_like(ids), cm)
        rows.append(float(lp.sum()))
    return torch.tensor(rows)


# --------------------------------------------------------------------------------------------------------
# losses on hand-computed examples

# one pair: policy chosen/rejected logps -10/-12, reference -11/-11 -> d = (1) - (-1) = 2
LP = dict(
    chosen_logps=torch.tensor([-10.0]),
    rejected_logps=torch.tensor([-12.0]),
    ref_chosen_logps=torch.tensor([-11.0]),
    ref_rejected_logps=torch.tensor([-11.0]),
    lengths=(torch.tensor([4.0]), torch.tensor([2.0])),
)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(
    "loss,beta,eps,expected",
    [
        ("sigmoid", 0.1, 0.0, -math.log(_sig(0.2))),  # -log s(b d), b d = 0.2
        ("sigmoid", 1.0, 0.0, -math.log(_sig(2.0))),
        ("hinge", 0.1, 0.0, 1 - 0.2),  # max(0, 1 - b d)
        ("hinge", 1.0, 0.0, 0.0),  # margin met
        ("ipo", 0.5, 0.0, (1 / 4 - (-1) / 2 - 1) ** 2),  # (1/4 + 1/2 - 1/(2*0.5))^2 = 0.0625
        ("robust", 0.1, 0.2, (-(0.8) * math.log(_sig(0.2)) + 0.2 * math.log(_sig(-0.2))) / 0.6),
        ("simpo", 2.0, 0.0, -math.log(_sig(2.0 * (1 / 4 + 1 / 2)))),  # length-normalised margin 0.75
    ],
)
def test_losses_hand_computed(loss, beta, eps, expected):
    out = preference_loss(**LP, spec=LossSpec(loss, beta, eps))
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert float(out.chosen_rewards[0]) == pytest.approx(beta * 1.0)
    assert float(out.rejected_rewards[0]) == pytest.approx(beta * -1.0)


def test_rpo_sft_term_and_batch_mean():
    lp = {k: torch.cat([v, v]) for k, v in LP.items() if k != "lengths"}
    lp["lengths"] = tuple(torch.cat([v, v]) for v in LP["lengths"])
    lp["chosen_logps"] = torch.tensor([-10.0, -11.0])  # second pair: policy == reference, d = 0 -> ln 2
    lp["rejected_logps"] = torch.tensor([-12.0, -11.0])
    out = preference_loss(**lp, spec=LossSpec("sigmoid", 0.1, sft_weight=0.5), chosen_nll=torch.tensor(3.0))
    pref = (-math.log(_sig(0.2)) + math.log(2)) / 2
    assert float(out.preference_loss) == pytest.approx(pref, abs=1e-6)
    assert float(out.loss) == pytest.approx(pref + 1.5, abs=1e-6)


def test_step0_expected_values():
    zero = dict(LP, chosen_logps=torch.tensor([-11.0]), rejected_logps=torch.tensor([-11.0]))
    for loss in LOSSES:
        out = preference_loss(**zero, spec=LossSpec(loss, 0.3, 0.1))
        assert float(out.loss) == pytest.approx(step0_expected(loss, 0.3), abs=1e-6)
    assert step0_expected("sigmoid", 0.1) == pytest.approx(0.693147, abs=1e-6)


# --------------------------------------------------------------------------------------------------------
# config and recipes


def test_recipes_load_with_published_settings():
    c = load_recipe("politune-llama3-8b")
    assert (c.lora.r, c.lora.alpha, c.lr, c.weight_decay, c.warmup_steps, c.beta, c.epochs) == (
        16,
        32,
        5e-4,
        0.05,
        100,
        0.1,
        4,
    )
    assert (c.batch_size, c.grad_accum, c.max_length, c.loss, c.scheduler) == (
        4,
        16,
        1024,
        "sigmoid",
        "cosine",
    )
    assert {"q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} == set(c.lora.targets)
    assert load_recipe("politune-mistral-7b").base == "mistral-7b"
    cp = load_recipe("compred-llama2-7b")
    assert (cp.method, cp.lora.r, cp.lora.alpha, cp.sft.lr, cp.lr, cp.beta) == (
        "sft_dpo",
        64,
        16,
        1e-5,
        2e-7,
        0.1,
    )
    cpu = load_recipe("cpu-smollm2", overrides=["beta=0.2", "lora.r=4"])
    assert cpu.beta == 0.2 and cpu.lora.r == 4 and cpu.base == "smollm2-135m"


def test_trl_mapping_hardware_decides(tmp_path):
    from politune.tune.config import dpo_args, hardware_settings, sft_args

    cfg = load_recipe(
        "politune-llama3-8b", overrides=["device=cpu", "loss=robust", "label_smoothing=0.1", "sft_weight=0.5"]
    )
    hw = hardware_settings(cfg)
    a = dpo_args(cfg, tmp_path, hw)
    # never TRL's defaults on CPU: bf16 autocast only where this CPU measured it fast, over fp32 weights
    fast = pick_dtype("auto", "cpu") == torch.bfloat16
    assert a.bf16 is fast and a.fp16 is False and a.gradient_checkpointing is False
    assert hw["load_dtype"] == torch.float32 and hw["dtype_choice"]["reason"]
    assert a.loss_type == ["robust", "sft"] and a.loss_weights == [1.0, 0.5] and a.label_smoothing == 0.1
    assert (a.learning_rate, a.per_device_train_batch_size, a.gradient_accumulation_steps, a.max_length) == (
        5e-4,
        4,
        16,
        1024,
    )
    s = sft_args(load_recipe("compred-llama2-7b", overrides=["device=cpu"]), tmp_path, hw)
    assert s.learning_rate == 1e-5 and s.bf16 is fast
    fp32 = hardware_settings(load_recipe("cpu-smollm2", overrides=["dtype=float32"]))
    assert dpo_args(cfg, tmp_path, fp32).bf16 is False and fp32["dtype_choice"]["reason"] == "set explicitly"


def test_bad_recipe_keys_fail_before_compute(tmp_path):
    with pytest.raises(PolituneError, match="unknown key 'betta'"):
        load_recipe("cpu-smollm2", overrides=["betta=0.2"])
    with pytest.raises(PolituneError, match=r"trl.max_prompt_length: not an option of the installed TRL"):
        load_recipe("cpu-smollm2", overrides=["trl.max_prompt_length=64"])  # removed in TRL's DPO rewrite
    with pytest.raises(PolituneError, match="trl.beta: set by politune"):
        load_recipe("cpu-smollm2", overrides=["trl.beta=0.3"])
    with pytest.raises(PolituneError, match="unknown recipe 'cpu-smolm2'.*did you mean 'cpu-smollm2'"):
        load_recipe("cpu-smolm2")
    with pytest.raises(PolituneError, match="QLoRA.*CUDA"):
        dpo(
            "tiny-random",
            tiny_pairs(),
            tiny_cfg("quantization=4bit", "device=cpu"),
            TuneOptions(out_dir=tmp_path / "q"),
        )
    assert not (tmp_path / "q").exists()


def test_bad_data_fails_before_compute(tmp_path, tiny_model_dir):
    pairs = tiny_pairs(4)
    del pairs[2]["chosen"]
    with pytest.raises(PolituneError, match=r"row 3 \(id p2\): missing field 'chosen'"):
        dpo(str(tiny_model_dir), pairs, tiny_cfg(), TuneOptions(out_dir=tmp_path / "a"))
    with pytest.raises(PolituneError, match="empty dataset"):
        dpo(str(tiny_model_dir), [], tiny_cfg(), TuneOptions(out_dir=tmp_path / "b"))
    with pytest.raises(PolituneError, match=r"row 1: prompt is \d+ tokens but max_length is 16"):
        dpo(
            str(tiny_model_dir), tiny_pairs(4), tiny_cfg("max_length=16"), TuneOptions(out_dir=tmp_path / "c")
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not (tmp_path / "c" / "metrics.jsonl").exists()
    with pytest.raises(PolituneError, match="lora.layers: .* has 2 layers"):
        dpo(
            str(tiny_model_dir),
            tiny_pairs(4),
            tiny_cfg("lora.layers=[5]"),
            TuneOptions(out_dir=tmp_path / "d"),
        )


# --------------------------------------------------------------------------------------------------------
# training on the tiny model


def test_dpo_fresh_lora_step0_outputs_and_trajectory(tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    calls = []

    def evaluate(model, tok):
        assert not model.training
        calls.append(1)
        return {"economic": -0.1 * len(calls), "n": len(calls)}

    res = dpo(
        str(tiny_model_dir),
        tiny_pairs(),
        tiny_cfg("eval_every=2"),
        TuneOptions(out_dir=tmp_path / "run", stance="left", evaluate=evaluate),
    )
    out = res.out_dir
    summary = json.loads((out / "summary.json").read_text())
    # step 0: loss = ln 2, policy log-probs == reference log-probs (reference = base with adapter disabled)
    assert summary["step0"]["ok"] and summary["step0"]["max_abs_logp_diff"] == 0.0
    assert summary["step0"]["loss"] == pytest.approx(math.log(2), abs=0.01)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "tokens_per_s",
        "peak_rss_mb",
    ):
        assert key in rows[-1]
    assert rows[-1]["rewards/margins"] > 0  # the tiny model learns to prefer the chosen answers
    traj = [json.loads(x) for x in (out / "trajectory.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traj] == [0, 2, 4] and traj[-1]["metrics"]["n"] == 3
    assert summary["kind"] == "tune" and summary["stance"] == "left" and summary["data"]["n"] == 16
    hw = summary["hardware"]
    assert hw["dtype"] == dtype_name(pick_dtype("auto", "cpu")) and hw["weights_dtype"] == "float32"
    assert hw["dtype_choice"]["requested"] == "auto" and hw["gradient_checkpointing"] is False
    card = (res.adapter_dir / "README.md").read_text()
    for needle in (
        "target stance | left",
        summary["data"]["sha256"],
        "cpu-smollm2",
        "Responsible use",
        "rewards/accuracies",
    ):
        assert needle in card
    assert (out / "config.yaml").is_file()
    acfg = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    assert not acfg.get("modules_to_save") and not acfg.get("use_dora")
    # loads with PEFT and generates
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, res.adapter_dir)
    ids = model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=4, do_sample=False)
    assert ids.shape[1] == 7
    # the trained adapter really changed the model
    lora_b = [v for k, v in model.state_dict().items() if "lora_B" in k]
    assert any(float(b.abs().max()) > 0 for b in lora_b)
    # politune tune merge: a full model with the same outputs as base + adapter
    from politune.tune import merge

    merged = AutoModelForCausalLM.from_pretrained(
        merge(str(tiny_model_dir), res.adapter_dir, tmp_path / "merged")
    )
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, model(x).logits, atol=1e-4)
    with pytest.raises(PolituneError, match="not empty"):
        dpo(str(tiny_model_dir), tiny_pairs(), tiny_cfg(), TuneOptions(out_dir=out))


@pytest.mark.parametrize(
    "loss", ["ipo", "simpo"]
)  # the length-normalised ones (lengths come from the trainer)
def test_loss_in_trainer_one_step(tmp_path, tiny_model_dir, loss):
    res = dpo(
        str(tiny_model_dir),
        tiny_pairs(8),
        tiny_cfg(f"loss={loss}", "label_smoothing=0.1", "max_steps=1", "sft_weight=0.2"),
        TuneOptions(out_dir=tmp_path / loss),
    )
    s = json.loads((res.out_dir / "summary.json").read_text())
    assert s["step0"]["ok"] and s["step0"]["expected_loss"] == pytest.approx(step0_expected(loss, 0.1))


def test_step0_check_stops_a_wrong_reference(tmp_path, tiny_model_dir, monkeypatch):
    """A non-zero-initialised adapter means policy != reference at step 0: training stops with a reason."""
    import politune.tune.run as run
    from politune.tune import config as tcfg

    real = tcfg.lora_config

    def random_init(lora):
        c = real(lora)
        c.init_lora_weights = False
        return c

    monkeypatch.setattr(run, "lora_config", random_init)
    with pytest.raises(PolituneError, match="step-0 check failed.*does not start from its reference"):
        dpo(str(tiny_model_dir), tiny_pairs(8), tiny_cfg("lr=1e-1"), TuneOptions(out_dir=tmp_path / "bad"))
    assert not (tmp_path / "bad" / "adapter").exists()


def test_sft_then_dpo_reference_is_the_sft_model(tmp_path, tiny_model_dir):
    from politune.models.loading import load_adapter, load_model

    pairs = tiny_pairs()
    res = sft_dpo(
        str(tiny_model_dir),
        pairs,
        tiny_cfg("max_steps=2"),
        TuneOptions(out_dir=tmp_path / "sd", stance="left"),
    )
    summary = json.loads((res.out_dir / "summary.json").read_text())
    assert summary["method"] == "sft_dpo"
    # DPO started exactly from the SFT model (frozen SFT adapter copy as reference)
    assert summary["step0"]["ok"] and summary["step0"]["max_abs_logp_diff"] == 0.0
    # ... and the SFT model is not the raw base, so a base reference would have failed the check
    base, tok = load_model(str(tiny_model_dir))
    lp_base = logps_of(base, tok, pairs[:4])
    sft_model = load_adapter(base, tmp_path / "sd" / "sft" / "adapter")
    lp_sft = logps_of(sft_model, tok, pairs[:4])
    assert float((lp_sft - lp_base).abs().max()) > 1e-2
    # the final adapter holds SFT + DPO: it loads on the plain base, and only the trained adapter was saved
    assert not (res.adapter_dir / "ref").exists()
    assert (tmp_path / "sd" / "sft" / "summary.json").is_file()


def test_checkpoint_out_of_disk_keeps_previous(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import Trainer

    from politune.tune.trainer import list_checkpoints

    real = Trainer._save_optimizer_and_scheduler
    calls = {"n": 0}

    def failing(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(output_dir, "optimizer.pt").write_bytes(b"half")  # a torn write
            raise OSError(28, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", failing)
    with pytest.raises(PolituneError, match="No space left on device.*previous checkpoint is intact"):
        dpo(
            str(tiny_model_dir),
            tiny_pairs(),
            tiny_cfg("save_every=2"),
            TuneOptions(out_dir=tmp_path / "disk"),
        )
    ckpts = list_checkpoints(tmp_path / "disk" / "checkpoints")
    assert [c.name for c in ckpts] == ["checkpoint-2"]
    assert torch.load(ckpts[0] / "optimizer.pt", weights_only=True)["state"]  # loads: not torn
    assert not (tmp_path / "disk" / "checkpoints" / ".staging").exists()


# --------------------------------------------------------------------------------------------------------
# CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.run(
        [sys.executable, "-m", "politune", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli_dpo_records_the_data_spec_and_evaluates_held_out_pairs(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from cli_helpers import run_cli

    data, held = tmp_path / "pairs.jsonl", tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in tiny_pairs(8)))
    held.write_text(
        "".join(
            json.dumps({**p, "id": f"h{i}", "prompt": p["prompt"].replace("think", "feel")}) + "\n"
            for i, p in enumerate(tiny_pairs(6))
        )
    )

    def dpo(out_dir, *extra):
        args = ["tune", "dpo", "--data", data, "--split", "", "--base", tiny_model_dir, "--out", out_dir]
        return run_cli([*args, *extra, "--eval-data", held], monkeypatch, capsys)

    sets = ["max_steps=2", "batch_size=4", "max_length=96", "lora.layers=null", "save_every=0", "lr=5e-3"]
    threads: list[int] = []  # --threads reaches torch (recorded here instead of applied)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    code, out, err = dpo(
        tmp_path / "run",
        "--stance",
        "left",
        "--json",
        "--threads",
        "1",
        *[x for o in sets for x in ("--set", o)],
    )
    assert code == 0, err
    assert threads == [1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"] == {**summary["data"], "source": str(data), "n": 8}
    assert summary["eval_data"] == {**summary["eval_data"], "source": str(held), "n": 6}
    card = (tmp_path / "run" / "adapter" / "README.md").read_text()
    assert f"`{data}`, 8 examples" in card and f"`{held}`, 6 examples" in card
    metrics = json.loads(out[out.index("{") :])["metrics"]
    assert metrics["step"] == 2 and 0.0 <= metrics["eval_rewards/accuracies"] <= 1.0
    # the held-out figure is computed with the trained adapter: not the step-0 zeros
    assert metrics["eval_rewards/margins"] != 0.0 and metrics["eval_loss"] != pytest.approx(
        math.log(2), abs=1e-6
    )
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 2] and "eval_rewards/accuracies" in rows[-1]
    # a bad evaluation file fails before any compute, naming the file
    held.write_text(json.dumps({"id": "h", "prompt": "Q?", "chosen": "yes"}) + "\n")
    code, out, err = dpo(tmp_path / "run2")
    assert code == 2 and "rejected" in err and str(held) in err and "Traceback" not in err
    assert not (tmp_path / "run2").exists()


def test_cli_bad_input_one_line_and_recipes(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"x{i}", "prompt": "Q?", "rejected": "no"}) + "\n" for i in range(2))
    )
    r = _cli("tune", "dpo", "--data", str(data), "--set", "betta=1", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown key 'betta'" in r.stderr
    r = _cli("tune", "dpo", "--data", str(data), "--threads", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--threads -1: expected 0" in r.stderr
    from typer.testing import CliRunner

    from politune.cli import app

    r = CliRunner().invoke(app, ["tune", "recipes", "--json"])  # in-process: no second interpreter start-up
    assert r.exit_code == 0, r.output
    names = {x["name"] for x in json.loads(r.stdout)}
    assert names == {"cpu-smollm2", "politune-llama3-8b", "politune-mistral-7b", "compred-llama2-7b"}
    r = CliRunner().invoke(app, ["tune", "--help"])
    assert all(c in r.stdout for c in ("dpo", "sft", "sft-dpo", "merge", "recipes"))


def test_trl_range_pinned_and_internals_present():
    """pyproject pins the TRL range the trainer is written against; the installed TRL is in it and still has the
    pieces politune.tune subclasses or calls."""
    import re
    import tomllib

    import trl
    from packaging.specifiers import SpecifierSet
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.utils import use_adapter  # noqa: F401

    from politune.tune.config import TRL_BELOW, TRL_MIN, check_trl_version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"trl\b", d))
    assert SpecifierSet(spec[3:]) == SpecifierSet(f">={TRL_MIN},<{TRL_BELOW}")
    assert trl.__version__ in SpecifierSet(spec[3:]) and check_trl_version() == trl.__version__
    fields = {f for f in DPOConfig.__dataclass_fields__}
    assert {
        "loss_type",
        "loss_weights",
        "beta",
        "label_smoothing",
        "max_length",
        "precompute_ref_log_probs",
    } <= fields
    assert "max_prompt_length" not in fields  # gone since the DPO rewrite: our recipes must not use it
    assert callable(DPOTrainer._compute_loss) and callable(DPOTrainer._prepare_dataset)


def test_default_trajectory_is_the_fast_compass(tmp_path, tiny_model_dir):
    res = dpo(
        str(tiny_model_dir),
        tiny_pairs(8),
        tiny_cfg("max_steps=2", "eval_every=2"),
        TuneOptions(out_dir=tmp_path / "t"),
    )
    traj = [json.loads(x) for x in (res.out_dir / "trajectory.jsonl").read_text().splitlines()]
    assert [t["step"] for t in traj] == [0, 2]
    assert {"economic", "social"} <= set(traj[0]["metrics"])


def test_bf16_and_fp32_dpo_agree(tiny_model_dir, tmp_path):
    """The CPU's fast dtype (bf16 autocast over fp32 weights) trains what fp32 trains: 10 identical DPO steps give
    losses within 1e-2 of each other, on a run whose loss really moves."""
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = tiny_cfg("max_steps=10", "lr=1e-2", f"dtype={dtype}")
        res = dpo(str(tiny_model_dir), tiny_pairs(), cfg, TuneOptions(out_dir=tmp_path / dtype))
        assert json.loads((res.out_dir / "summary.json").read_text())["hardware"]["dtype"] == dtype
        rows = [json.loads(x) for x in (res.out_dir / "metrics.jsonl").read_text().splitlines()]
        losses[dtype] = [r["loss"] for r in rows if "loss" in r]
    fp32, bf16 = losses["float32"], losses["bfloat16"]
    assert len(fp32) == len(bf16) == 10
    assert abs(fp32[0] - math.log(2)) < 1e-3 and abs(fp32[-1] - fp32[0]) > 0.05  # training moved the loss
    assert max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)) <= 1e-2, (fp32, bf16)


def test_frozen_layers_run_in_the_training_dtype(tiny_model_dir, tmp_path, monkeypatch):
    """The frozen bottom layers (run once per batch for policy and reference) are called outside the prepared
    model's forward, which is where autocast is entered: under bf16 they must run under autocast too (they ran
    in fp32, a third of a step on the 2-core CPU), in fp32 without it."""
    from politune.tune import trainer

    seen: list[bool] = []
    real = trainer.shared_prefix

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "shared_prefix", spy)
    for dtype, want in (("bfloat16", True), ("float32", False)):
        seen.clear()
        cfg = tiny_cfg("max_steps=2", "lora.layers=[1]", f"dtype={dtype}")
        dpo(str(tiny_model_dir), tiny_pairs(), cfg, TuneOptions(out_dir=tmp_path / dtype))
        assert seen and set(seen) == {want}, (dtype, seen)


def _pair_batch(prompt_lens, chosen_lens, rejected_lens, length=12, seed=0):
    """A DPO batch as TRL's collator lays it out: [prompt_i + chosen_i ; prompt_i + rejected_i], right-padded."""
    g = torch.Generator().manual_seed(seed)
    b = len(prompt_lens)
    ids = torch.zeros(2 * b, length, dtype=torch.long)
    am, cm = torch.zeros_like(ids), torch.zeros_like(ids)
    prompts = [torch.randint(5, 500, (p,), generator=g) for p in prompt_lens]
    for side, lens in enumerate((chosen_lens, rejected_lens)):
        for i, (p, c) in enumerate(zip(prompt_lens, lens, strict=True)):
            r = side * b + i
            ids[r, :p], ids[r, p : p + c] = prompts[i], torch.randint(5, 500, (c,), generator=g)
            am[r, : p + c], cm[r, p : p + c] = 1, 1
    return ids, am, cm


def test_shared_prompt_prefix_equals_running_every_row():
    """Each prompt run once through the frozen layers, its KV cache shared by the chosen and the rejected row, gives
    the same hidden states at every real position as running all rows whole."""
    from politune.models.tiny import build_tiny_model
    from politune.tune.prefix import prompt_lengths, shared_prefix

    model, _ = build_tiny_model(layers=4)
    model.eval()
    ids, am, cm = _pair_batch([3, 5, 4], [4, 6, 2], [5, 3, 7])
    assert prompt_lengths(ids, cm).tolist() == [3, 5, 4]
    for k in (1, 3):
        whole = shared_prefix(model.model, ids, am, k)
        shared = shared_prefix(model.model, ids, am, k, completion_mask=cm)
        real = am.bool()
        assert whole[real].abs().max() > 1e-3
        assert torch.allclose(whole[real], shared[real], atol=1e-6)
    other = ids.clone()
    other[4, 0] += 1  # rejected row of pair 1 has another prompt: not shareable, every row runs whole
    assert prompt_lengths(other, cm) is None
    assert prompt_lengths(ids[:5], cm[:5]) is None
