"""DPO throughput on CPU: politune vs TRL's DPOTrainer at its fastest on this machine (fp32 and bf16 arms).

Same model (smollm2-135m), same built-in data (builtin:left, train split), same batch, same LoRA (the
cpu-smollm2 recipe's), same seed, one process per arm (so peak RSS is per arm), run one after the other:

- ``politune``: ``politune.tune`` with the cpu-smollm2 recipe and ``dtype: auto`` (bf16 autocast over fp32
  weights where this CPU measures bf16 fast, else fp32; no checkpointing, completion-only LM head in fp32,
  frozen layers shared by policy and reference);
- ``politune-fp32``: the same with ``dtype=float32`` (shows what the dtype alone buys, and the loss agreement);
- ``trl-fp32``: TRL with the best CPU settings found by hand: fp32, no gradient checkpointing, the same
  ``max_length`` as politune, no dataloader workers;
- ``trl-bf16``: the same with ``bf16=True`` (autocast over fp32 weights: on this CPU faster than loading the
  weights in bf16);
- ``trl-defaults``: ``DPOConfig(output_dir=...)`` as TRL's docs show, plus batch size and steps and
  ``use_cpu=True`` (without it TRL's defaults refuse to start on a GPU-less machine): bf16, gradient
  checkpointing, ``max_length`` 1024.

"Best TRL" is the faster of ``trl-fp32`` and ``trl-bf16`` in this run; every arm's ratio is against it, with
the largest per-step loss difference from it ("matched loss": identical updates must give the same losses).

    python bench/dpo_throughput.py --steps 4 --json /tmp/dpo_bench.json
    python bench/dpo_throughput.py --arms politune,trl-bf16 --steps 3     # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from politune.fsutil import atomic_write_json


def _pairs_and_recipe(overrides: list[str]):
    from politune.data import load
    from politune.tune import load_recipe

    pairs = load("builtin:left", split="train")
    # sft_weight=0: the recipe's RPO term off, so that every arm optimises the same sigmoid DPO loss
    return pairs, load_recipe("cpu-smollm2", overrides=["sft_weight=0", *overrides])


def _timed_callback(times: list, losses: list, tokens: list, trainer_ref: list):
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Timer()


def _count_tokens(trainer, batch_size: int, steps: int) -> int:
    """Non-pad tokens the first ``steps`` batches hold (chosen + rejected sequences)."""
    dl = trainer.get_train_dataloader()
    n = 0
    for i, batch in enumerate(dl):
        if i >= steps:
            break
        n += int(batch["attention_mask"].sum())
    return n


TRL_ARMS = ("trl-fp32", "trl-bf16")


def run_arm(arm: str, steps: int, overrides: list[str]) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig

    from politune.models import load_model
    from politune.tune.config import lora_config
    from politune.tune.data import preference_data

    torch.manual_seed(0)
    pairs, cfg = _pairs_and_recipe(overrides)
    cfg = cfg.model_copy(update={"max_steps": steps})
    rows = preference_data(pairs, cfg.system).rows
    times: list[float] = []
    losses: list[float] = []
    t_start = time.perf_counter()
    if arm.startswith("politune"):
        import tempfile

        from politune.tune import TuneOptions, dpo
        from politune.tune.trainer import PolituneDPOTrainer

        orig_init = PolituneDPOTrainer.__init__
        holder = {}

        def init(self, *a, **k):
            orig_init(self, *a, **k)
            self.add_callback(_timed_callback(times, losses, [], []))
            holder["trainer"] = self

        PolituneDPOTrainer.__init__ = init
        update = {"save_every": 0, **({"dtype": "float32"} if arm == "politune-fp32" else {})}
        with tempfile.TemporaryDirectory() as d:
            dpo(cfg.base, pairs, cfg.model_copy(update=update), TuneOptions(out_dir=os.path.join(d, "run")))
        trainer = holder["trainer"]
    else:
        from trl import DPOConfig, DPOTrainer

        model, tok = load_model(cfg.base, dtype="float32")  # fp32 weights; bf16 arms autocast over them
        lc: LoraConfig = lora_config(cfg.lora)
        ds = Dataset.from_list(rows)
        common = dict(
            output_dir="/tmp/politune-bench-trl",
            per_device_train_batch_size=cfg.batch_size,
            max_steps=steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=cfg.seed,
            learning_rate=cfg.lr,
            beta=cfg.beta,
            disable_tqdm=True,
        )
        if arm == "trl-defaults":
            # TRL's defaults refuse to start on a CPU-only machine ("Your setup doesn't support bf16/gpu"), so
            # use_cpu=True is the one setting added; bf16 autocast and gradient checkpointing stay on.
            args = DPOConfig(**common, use_cpu=True)
        else:
            args = DPOConfig(
                **common,
                bf16=arm == "trl-bf16",
                fp16=False,
                gradient_checkpointing=False,
                max_length=cfg.max_length,
                dataloader_num_workers=0,
                use_cpu=True,
                lr_scheduler_type=cfg.scheduler,
                warmup_steps=cfg.warmup_steps,
            )
        trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lc)
        trainer.add_callback(_timed_callback(times, losses, [], []))
        trainer.train()
    wall = time.perf_counter() - t_start
    tokens = _count_tokens(trainer, cfg.batch_size, steps)
    steady = times[1:] or times
    return {
        "arm": arm,
        "steps": len(times),
        "s_per_step": sum(steady) / len(steady),
        "step_times": times,
        "tokens_per_s": tokens / sum(times),
        "tokens": tokens,
        "step1_loss": losses[0] if losses else None,
        "losses": losses,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": wall,
        "batch_pairs": cfg.batch_size,
        "max_length": cfg.max_length,
        "bf16": bool(getattr(trainer.args, "bf16", False)),
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "max_length_used": trainer.args.max_length,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arms = ["politune", "politune-fp32", *TRL_ARMS, "trl-defaults"]
    ap.add_argument("--arm", choices=arms, help="run one arm (internal)")
    ap.add_argument("--arms", default="politune,politune-fp32,trl-fp32,trl-bf16")
    ap.add_argument("--steps", type=int, default=4, help="steps per arm (but trl-defaults)")
    ap.add_argument("--default-steps", type=int, default=1, help="steps for trl-defaults (slow)")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="recipe override KEY=VALUE (e.g. base=tiny-random for a smoke test), applied to every arm",
    )
    a = ap.parse_args()
    if a.arm:
        print("RESULT " + json.dumps(run_arm(a.arm, a.steps, a.set)), flush=True)
        return
    results = {}
    for arm in a.arms.split(","):
        steps = a.default_steps if arm == "trl-defaults" else a.steps
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
        sets = [x for s in a.set for x in ("--set", s)]
        r = subprocess.run(
            [sys.executable, __file__, "--arm", arm, "--steps", str(steps), *sets],
            capture_output=True,
            text=True,
            env=env,
        )
        line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
        if r.returncode or not line:
            print(f"{arm}: failed\n{r.stderr[-2000:]}")
            continue
        results[arm] = json.loads(line[-1][7:])
        x = results[arm]
        print(
            f"{arm:13s} {x['s_per_step']:8.2f} s/step {x['tokens_per_s']:8.1f} tok/s "
            f"{x['peak_rss_mb']:8.0f} MB  step-1 loss {x['step1_loss']:.6f}  ({x['steps']} steps, "
            f"bf16={x['bf16']}, ckpt={x['gradient_checkpointing']}, max_length={x['max_length_used']})",
            flush=True,
        )
    trl = [results[a] for a in TRL_ARMS if a in results]
    best = max(trl, key=lambda x: x["tokens_per_s"]) if trl else None
    if best:
        print(f"best TRL in this run: {best['arm']}")
        for arm, x in results.items():
            n = min(len(x["losses"]), len(best["losses"]))
            diff = max(abs(a - b) for a, b in zip(x["losses"][:n], best["losses"][:n], strict=True))
            x["vs_best_trl"] = {
                "tokens_per_s_ratio": x["tokens_per_s"] / best["tokens_per_s"],
                "s_per_step_ratio": best["s_per_step"] / x["s_per_step"],
                "rss_ratio": x["peak_rss_mb"] / best["peak_rss_mb"],
                "max_loss_diff": diff,
            }
            v = x["vs_best_trl"]
            print(
                f"{arm:13s} vs {best['arm']}: tokens/s x{v['tokens_per_s_ratio']:.2f}, s/step "
                f"x{v['s_per_step_ratio']:.2f}, RSS x{v['rss_ratio']:.2f}, max loss diff over {n} steps "
                f"{diff:.1e}"
            )
    load1, load5, _ = os.getloadavg()
    from politune.hardware import cpu_bf16

    out = {
        "results": results,
        "best_trl": best["arm"] if best else None,
        "loadavg": [load1, load5],
        "cpus": os.cpu_count(),
        "cpu_bf16": cpu_bf16().reason,
        "overrides": a.set,
    }
    print(f"load average during run: {load1:.1f} (1 min), {load5:.1f} (5 min) on {os.cpu_count()} CPUs")
    if a.json:
        atomic_write_json(a.json, out)


if __name__ == "__main__":
    main()
