"""``politune serve --backend vllm``: the equivalent ``vllm serve`` command for a GPU machine.

The same model and adapters, served by vLLM's OpenAI-compatible server with LoRA: ``--enable-lora``, one
``--lora-modules NAME=DIR`` per adapter, ``--max-loras`` = the number of adapters (all resident at once) and
``--max-lora-rank`` = the largest adapter rank rounded up to a value vLLM accepts. The API key travels in the
environment (``VLLM_API_KEY``), never on the command line where ``ps`` would show it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from politune.errors import PolituneError
from politune.fsutil import safe_name
from politune.serve.adapters import adapter_rank
from politune.serve.engine import BASE
from politune.serve.limits import Endpoint

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


@dataclass
class VllmCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # extra environment (the API key)

    def shell(self) -> str:
        """The command as one shell line (the key shown as ``$VLLM_API_KEY``)."""
        prefix = "VLLM_API_KEY=$VLLM_API_KEY " if "VLLM_API_KEY" in self.env else ""
        return prefix + shlex.join(self.argv)


def vllm_model_ref(model: str) -> str:
    """What vLLM should load: a hub id for hub models, a local directory otherwise (registry models that
    politune builds locally, such as the embedded default, are converted first)."""
    from politune.models.registry import REGISTRY, pull

    if model in REGISTRY:
        entry = REGISTRY[model]
        if entry.source == "hub" and entry.hf_id:
            return entry.hf_id
        return str(pull(model).resolve())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PolituneError(f"model directory {model!r} has no config.json")
        return str(path.resolve())
    name = model.removeprefix("hf:")
    if "/" in name and not name.startswith((".", "/", "~")):
        return name
    raise PolituneError(
        f"unknown model {model!r}: not a registry name, a local directory or a hub id (org/name)"
    )


def lora_rank_for_vllm(rank: int) -> int:
    for r in VLLM_LORA_RANKS:
        if rank <= r:
            return r
    raise PolituneError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def vllm_command(
    model: str,
    adapters: dict[str, str] | None = None,
    endpoint: Endpoint = Endpoint(),
    served_name: str | None = None,
    dtype: str = "auto",
    extra_args: list[str] | None = None,
) -> VllmCommand:
    """Build the ``vllm serve`` command line for ``model`` with ``adapters`` (name -> PEFT adapter dir);
    ``extra_args`` go to ``vllm serve`` as they are (e.g. ``["--max-model-len", "4096"]``)."""
    ref = vllm_model_ref(model)
    served = served_name or (
        model if model in _registry_names() or not Path(model).exists() else Path(ref).name
    )
    argv = [
        "vllm",
        "serve",
        ref,
        "--served-model-name",
        served,
        "--host",
        endpoint.host,
        "--port",
        str(endpoint.port),
        "--dtype",
        dtype,
    ]
    adapters = adapters or {}
    if adapters:
        modules, ranks = [], []
        for name, adir in adapters.items():
            safe_name(name, "adapter name")
            if name in (BASE, served):
                raise PolituneError(f"adapter name {name!r} is reserved for the base model")
            path = Path(adir)
            if not (path / "adapter_config.json").is_file():
                raise PolituneError(
                    f"adapter {name}={adir}: no adapter_config.json (not a PEFT adapter directory)"
                )
            modules.append(f"{name}={path.resolve()}")
            ranks.append(adapter_rank(path))
        argv += [
            "--enable-lora",
            "--lora-modules",
            *modules,
            "--max-loras",
            str(len(adapters)),
            "--max-lora-rank",
            str(lora_rank_for_vllm(max(ranks))),
        ]
    argv += list(extra_args or [])
    return VllmCommand(argv, {"VLLM_API_KEY": endpoint.api_key} if endpoint.api_key else {})


def _registry_names() -> set[str]:
    from politune.models.registry import REGISTRY

    return set(REGISTRY)
