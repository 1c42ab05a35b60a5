"""What a result records about how it was made: package versions, host, time."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from typing import Any

_PACKAGES = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "numpy"]


def package_versions() -> dict[str, str]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    out["python"] = platform.python_version()
    return out


def provenance() -> dict[str, Any]:
    from politune import __version__

    return {
        "politune": __version__,
        "packages": package_versions(),
        "host": platform.node(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
