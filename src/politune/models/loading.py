"""``load_model``: any model reference (+ optional LoRA adapter) -> (model, tokenizer) on the right device/dtype."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from politune.errors import PolituneError
from politune.hardware import dtype_name, pick_device, pick_dtype
from politune.models.registry import resolve_model

if TYPE_CHECKING:
    from peft import PeftModel

log = logging.getLogger("politune")

# A loaded causal LM (a transformers model, or a PEFT model wrapping one) and its tokenizer. Any, on purpose:
# transformers' and PEFT's annotations are too loose to check calls through (``decode`` returns ``str |
# list[str]``, a PeftModel's ``generate`` resolves to ``Module.__getattr__``), so the names document the role.
CausalLM: TypeAlias = Any
Tokenizer: TypeAlias = Any


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Tokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name: str,
    adapter: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    adapter_trainable: bool = False,
) -> tuple[CausalLM, Tokenizer]:
    """Load ``name`` (registry name, local dir or hub id) and optionally a PEFT LoRA adapter directory.

    ``device``: auto = cuda > mps > cpu. ``dtype``: auto = bf16 on Ampere+ GPUs, fp16 on older GPUs; on a CPU
    bf16 where a native bf16 path is found and measured faster (:func:`politune.hardware.cpu_bf16`), else fp32.
    Weights are read from safetensors only. Returns ``(model, tokenizer)`` with the model in eval mode.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    log.info("loading %s on %s as %s", name, dev, dtype_name(dt))
    if os.environ.get("POLITUNE_QUIET_LOADING") == "1":  # set by the CLI unless --verbose
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers: unannotated
    model: CausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dt, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as e:
        raise PolituneError(f"model {name!r} at {path}: could not load safetensors weights ({e})") from None
    model.to(dev)
    tok = load_tokenizer(path, trust_remote_code)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if adapter is not None:
        model = load_adapter(model, adapter, trainable=adapter_trainable)
    model.eval()
    return model, tok


def load_adapter(
    model: CausalLM, adapter: str | Path, name: str = "default", trainable: bool = False
) -> PeftModel:
    """Attach a PEFT LoRA adapter directory to ``model`` (safetensors only)."""
    from peft import PeftModel

    adir = Path(adapter)
    if not (adir / "adapter_config.json").is_file():
        raise PolituneError(f"adapter directory {str(adapter)!r} has no adapter_config.json")
    if not (adir / "adapter_model.safetensors").is_file():
        raise PolituneError(f"adapter directory {str(adapter)!r} has no adapter_model.safetensors")
    return PeftModel.from_pretrained(model, adir, adapter_name=name, is_trainable=trainable)


def model_info(name: str, device: str = "auto", dtype: str = "auto") -> dict[str, Any]:
    """Parameters, dtype, device and cache path of a model (loads it)."""
    path = resolve_model(name)
    model, tok = load_model(name, device=device, dtype=dtype)
    n = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "path": str(path),
        "parameters": n,
        "parameters_millions": round(n / 1e6, 2),
        "dtype": dtype_name(next(model.parameters()).dtype),
        "device": str(next(model.parameters()).device),
        "architecture": type(model).__name__,
        "vocab_size": len(tok),
        "chat_template": bool(getattr(tok, "chat_template", None)),
    }
