"""Pick device and dtype from the hardware, never from a library default.

Libraries pick dtypes for you (TRL defaults to bf16), and the right choice depends on the machine. On a CPU, bf16
speed varies from far slower than fp32 (CPUs without native bf16 emulate it) to several times faster (a CPU with
``avx512_bf16`` or ``amx_bf16``: docs/benchmarks.md). So ``dtype: auto`` on a CPU is decided in two steps:

1. the CPU must advertise a native bf16 path (``amx_bf16`` / ``avx512_bf16`` on x86, ``bf16`` on Arm);
2. a one-second micro-benchmark (:func:`measure_bf16_speedup`: a 512x576x1536 matmul, the shape of a small
   model's MLP, timed in fp32 and bf16, interleaved) must show bf16 at least :data:`MIN_BF16_SPEEDUP` times
   faster.

Only then is bf16 chosen; otherwise fp32. The choice and its evidence (:func:`dtype_choice`) are recorded in every
run's summary. The benchmark runs once per process, the first time a CPU dtype is asked for.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch

from politune.errors import PolituneError

log = logging.getLogger("politune")

MIN_BF16_SPEEDUP = 1.3  # bf16 must beat fp32 by this factor in the micro-benchmark to be chosen on a CPU
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 flags of a native bf16 path; Arm advertises "bf16"


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


@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU runs bf16 fast, and the evidence."""

    fast: bool
    flags: tuple[str, ...]  # native bf16 flags the CPU advertises
    speedup: float | None  # bf16 / fp32 matmul throughput measured here (None: not measured, no native path)
    reason: str


def cpu_bf16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The native bf16 flags this CPU advertises (from ``/proc/cpuinfo``; empty where it cannot be read)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return ()
    words: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in {"flags", "features"}:
            words.update(value.split())
    arm = platform.machine().lower() in {"aarch64", "arm64"}
    return tuple(f for f in (*BF16_CPU_FLAGS, *(("bf16",) if arm else ())) if f in words)


def measure_bf16_speedup(seconds: float = 1.0, shape: tuple[int, int, int] = (512, 576, 1536)) -> float:
    """bf16 / fp32 throughput of one matmul on this CPU, timed interleaved for about ``seconds`` in all."""
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    pairs = {torch.float32: (a32, b32), torch.bfloat16: (a32.bfloat16(), b32.bfloat16())}
    best = {dt: float("inf") for dt in pairs}
    for a, b in pairs.values():  # warm-up: first calls pick kernels and allocate
        a @ b
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or any(t == float("inf") for t in best.values()):
        for dt, (a, b) in pairs.items():
            t = time.perf_counter()
            a @ b
            best[dt] = min(best[dt], time.perf_counter() - t)
    return best[torch.float32] / best[torch.bfloat16]


@functools.cache
def cpu_bf16() -> CpuBf16:
    """Decide once per process whether bf16 is the fast dtype on this CPU (flags, then a measured speed-up)."""
    flags = cpu_bf16_flags()
    if not flags:
        return CpuBf16(False, (), None, "no native bf16 flag (amx_bf16 / avx512_bf16 / bf16): fp32")
    speedup = round(measure_bf16_speedup(), 2)
    fast = speedup >= MIN_BF16_SPEEDUP
    verdict = "bf16" if fast else f"fp32 (below the {MIN_BF16_SPEEDUP}x needed)"
    reason = f"{'/'.join(flags)}; bf16 matmul measured {speedup}x fp32 here: {verdict}"
    log.info("CPU dtype: %s", reason)
    return CpuBf16(fast, flags, speedup, reason)


def cpu_bf16_decided() -> CpuBf16 | None:
    """The decision :func:`cpu_bf16` made in this process, or None if no ``auto`` CPU dtype was asked for (so
    recording it never runs the benchmark)."""
    return cpu_bf16() if cpu_bf16.cache_info().currsize else None


def pick_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` -> bf16 on GPUs that run it fast (Ampere, compute capability >= 8), fp16 on older GPUs and MPS;
    on a CPU bf16 only where :func:`cpu_bf16` finds and measures a fast path, else fp32."""
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
    return torch.bfloat16 if cpu_bf16().fast else torch.float32


def dtype_choice(dtype: str | torch.dtype, device: str) -> dict[str, Any]:
    """What a run records about its dtype: the value asked for, the one used, and why."""
    picked = pick_dtype(dtype, device)
    if dtype != "auto":
        why = "set explicitly"
    elif device == "cpu":
        why = cpu_bf16().reason
    else:
        why = f"auto on {device}"
    out: dict[str, object] = {"requested": dtype if isinstance(dtype, str) else dtype_name(dtype)}
    out["dtype"] = dtype_name(picked)
    out["reason"] = why
    if device == "cpu" and dtype == "auto":
        out["bf16_speedup"] = cpu_bf16().speedup
    return out


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
