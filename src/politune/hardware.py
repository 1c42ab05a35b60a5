"""Pick device and dtype from the hardware, never from a library default.

Libraries pick dtypes for you (TRL defaults to bf16), and the right choice depends on the machine: bf16 speed
on a CPU varies by machine, from far slower than fp32 (CPUs without native bf16 emulate it) to ~4x faster
(docs/benchmarks.md measured 4.4x faster on an AMD EPYC with ``avx512_bf16``). So every component asks
:func:`pick_device` / :func:`pick_dtype` instead, and politune measures (docs/benchmarks.md) rather than
assumes.
"""

from __future__ import annotations

import logging

import torch

from politune.errors import PolituneError

log = logging.getLogger("politune")


def pick_device(device: str = "auto") -> str:
    """``auto`` -> cuda > mps > cpu. An explicit device is checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PolituneError(f"device {device!r} requested but no CUDA GPU is available (use --device cpu)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise PolituneError("device 'mps' requested but Apple MPS is not available")
    if device.split(":")[0] not in {"cpu", "cuda", "mps"}:
        raise PolituneError(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` -> bf16 on GPUs that run it fast (Ampere, compute capability >= 8), fp16 on older GPUs and MPS,
    fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise PolituneError(f"unknown dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
        return _DTYPES[dtype]
    if device.startswith("cuda"):
        major, _ = torch.cuda.get_device_capability(torch.device(device))
        return torch.bfloat16 if major >= 8 else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
