"""A tuning run's folder: made ready (fresh, resumed or replaced), its logs cut back to a checkpoint on resume,
its final metrics, and the trained adapter saved into it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.fsutil import atomic_dir, atomic_write_jsonl, read_jsonl_log

if TYPE_CHECKING:
    from politune.tune.trainer import PolituneTrainer


def prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool, keep: tuple[str, ...] = ()) -> None:
    present = [p for p in out_dir.iterdir() if p.name not in keep] if out_dir.exists() else []
    if present and not resume:
        if not overwrite:
            raise PolituneError(
                f"{out_dir}: output folder is not empty; pass --resume to continue the run in it, "
                "--overwrite to replace it, or choose another folder"
            )
        for p in present:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def truncate_logs(out_dir: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we continue from (they will be re-made)."""
    for name in ("metrics.jsonl", "trajectory.jsonl"):
        p = out_dir / name
        if p.exists():
            atomic_write_jsonl(p, [r for r in read_jsonl_log(p) if r.get("step", 0) <= step])


def final_metrics(rows: list[dict[str, Any]], window: int = 5) -> dict[str, Any]:
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return {}
    last = rows[-1]
    keys = [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "tokens_per_s",
        "peak_rss_mb",
    ]
    final = {k: last[k] for k in keys if k in last}
    tail = rows[-window:]
    for k in ("loss", "rewards/margins", "rewards/accuracies"):
        vals = [r[k] for r in tail if k in r]
        if vals:
            final[f"{k}_last{len(vals)}_mean"] = round(sum(vals) / len(vals), 6)
    final["step"] = last["step"]
    return final


def save_adapter(trainer: PolituneTrainer, out_dir: Path) -> Path:
    """Save only the trained ``default`` adapter (not TRL's ``ref`` copy), as PEFT safetensors, atomically."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    dest = out_dir / "adapter"
    if trainer.accelerator.is_main_process:
        with atomic_dir(dest) as tmp:
            model.save_pretrained(tmp, selected_adapters=["default"], safe_serialization=True)
            if (tmp / "default").is_dir():  # PEFT puts a non-"default" selection in a subfolder; flatten
                for p in (tmp / "default").iterdir():
                    os.replace(p, tmp / p.name)
                (tmp / "default").rmdir()
    trainer.accelerator.wait_for_everyone()
    return dest
