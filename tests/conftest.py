"""Shared fixtures.

- Every test gets its own ``POLITUNE_HOME`` (no test touches the user's cache), except the real
  ``smollm2-135m`` which is converted once per machine into ``$POLITUNE_TEST_HOME`` (default
  ``~/.cache/politune-test``) and shared by the integration tests through the ``smollm2_dir`` fixture.
- ``tiny_model`` builds a random-weight Llama + byte-level ChatML tokenizer in memory in about a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _politune_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("politune_home")
    monkeypatch.setenv("POLITUNE_HOME", str(home))
    yield home


@pytest.fixture
def tiny_model():
    """(model, tokenizer): tiny random Llama, fp32, CPU, eval mode, seed 0."""
    from politune.models.tiny import build_tiny_model

    return build_tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model saved as a local model directory (safetensors + tokenizer), for code that takes a path."""
    from politune.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("tiny-model")
    model, tok = build_tiny_model(seed=0)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real default model converted to safetensors once per machine (slow the first time, ~20 s)."""
    from politune.models.registry import pull

    home = Path(os.environ.get("POLITUNE_TEST_HOME") or Path.home() / ".cache" / "politune-test")
    old = os.environ.get("POLITUNE_HOME")
    os.environ["POLITUNE_HOME"] = str(home)
    try:
        return pull("smollm2-135m")
    finally:
        if old is None:
            os.environ.pop("POLITUNE_HOME", None)
        else:
            os.environ["POLITUNE_HOME"] = old
