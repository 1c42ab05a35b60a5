"""Models: the registry (``smollm2-135m`` embedded default, ``tiny-random`` for tests, hub ids, local dirs),
loading on the right device and dtype, and batched chat generation."""

from politune.models.generation import as_messages, format_chat, generate
from politune.models.loading import load_adapter, load_model, load_tokenizer, model_info
from politune.models.registry import REGISTRY, ModelEntry, pull, resolve_model, verify_cache

__all__ = [
    "REGISTRY",
    "ModelEntry",
    "as_messages",
    "format_chat",
    "generate",
    "load_adapter",
    "load_model",
    "load_tokenizer",
    "model_info",
    "pull",
    "resolve_model",
    "verify_cache",
]
