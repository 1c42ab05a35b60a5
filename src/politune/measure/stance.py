"""The offline stance scorer: a lean in [-1, 1] per answer and axis, with no network and no judge.

How it works (readable top to bottom):

1. **Encoder.** Each (prompt, answer) pair is written as a chat turn in the encoder's chat template and run
   through SmolLM2-135M-Instruct, the embedded default model (:data:`ENCODER`). The answer is read *with* its
   prompt: "Yes." means something only next to the question it answers. The feature vector is the mean of
   one hidden layer's states over the tokens (layer per axis in :data:`LAYERS`).
2. **Probe.** Per axis, a logistic regression with three classes (left / neutral / right, the sign of the
   label) on standardised features. Lean = P(right) - P(left), so an answer the probe reads as neutral,
   incoherent or off-axis lands near 0.
3. **Data.** It is fitted on ``measure/corpus/lean-v1.jsonl`` only: 1,040 answers of many styles written and
   labelled by four writers who never saw the built-in ideology data that the demo's adapters are tuned on
   (see that folder's README). Nothing is fitted on ``builtin:left|right``, so the scorer cannot have learnt
   "sounds like the built-in left text". The layers and the regularisation (:data:`C`) were chosen on the
   gold set's *dev* half; its *test* half is only ever used to report (``politune measure validate-judge``,
   numbers in docs/gold.md and in every result through :func:`validated_accuracy`).

The fitted probe ships as ``measure/corpus/probe-v1.json`` (a few hundred kB, tied to the corpus by its
SHA-256), so scoring needs no fitting. ``fit_probe()`` reproduces it from the corpus in ~4 min on 2 CPU
cores (``scripts/fit_stance_probe.py``; a test checks the shipped file belongs to the shipped corpus). A corpus other than
the shipped one is fitted on first use and cached in ``$POLITUNE_HOME/stance/``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from politune.errors import PolituneError
from politune.fsutil import atomic_write_bytes, parse_jsonl_objects, politune_home, sha256_text
from politune.measure.scorer import AXES

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer

log = logging.getLogger("politune")

SCORER_VERSION = "offline-probe-v1"
ENCODER = "smollm2-135m"  # registry name of the model whose hidden states are the features
LAYERS = {
    "economic": 19,
    "social": 27,
}  # index into hidden_states (0 = embeddings) per axis; chosen on gold dev
C = {"economic": 0.01, "social": 0.03}  # inverse L2 strength of the logistic regression per axis (same)
MAX_TOKENS = 256  # a (prompt, answer) pair is cut to this many tokens
_BATCH = 16


@dataclass(frozen=True)
class LeanExample:
    """One labelled corpus item: an answer to a prompt, with its lean on each axis in -2..+2."""

    id: str
    prompt: str
    text: str
    economic: int
    social: int


def corpus_path() -> Path:
    return Path(str(resources.files("politune.measure") / "corpus" / "lean-v1.jsonl"))


def corpus_rows(p: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of a corpus JSONL whose rows have a non-empty ``prompt`` and ``text`` (checked; a bad
    row is a one-line error naming file, line and field). ``what`` names the corpus in errors."""
    if not p.is_file():
        raise PolituneError(f"{p}: {what} corpus not found")
    rows = parse_jsonl_objects(p.read_text(encoding="utf-8"), str(p))
    for n, d in rows:
        for key in ("prompt", "text"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise PolituneError(f"{p}:{n}: {key}: expected a non-empty string")
    if not rows:
        raise PolituneError(f"{p}: empty {what} corpus")
    return rows


def load_corpus(path: str | Path | None = None) -> list[LeanExample]:
    """Read a lean corpus (default: the shipped ``lean-v1.jsonl``); every row is checked."""
    p = Path(path) if path is not None else corpus_path()
    out = []
    for n, d in corpus_rows(p, "lean"):
        for axis in AXES:
            if not isinstance(d.get(axis), int) or not -2 <= d[axis] <= 2:
                raise PolituneError(f"{p}:{n}: {axis}: expected an integer in -2..2")
        out.append(LeanExample(str(d.get("id", n)), d["prompt"], d["text"], d["economic"], d["social"]))
    return out


def _corpus_hash(rows: Sequence[LeanExample]) -> str:
    blob = json.dumps([[r.prompt, r.text, r.economic, r.social] for r in rows], ensure_ascii=False)
    return sha256_text(f"{SCORER_VERSION}\n{LAYERS}\n{C}\n{blob}")[:16]


# ----------------------------------------------------------------------------------------------- encoder
_ENCODER: dict[str, tuple[CausalLM, Tokenizer]] = {}
_ENCODER_LOCK = threading.Lock()


def _encoder() -> tuple[CausalLM, Tokenizer]:
    """(model, tokenizer) of :data:`ENCODER`, loaded once per process, fp32 on the CPU."""
    with _ENCODER_LOCK:
        if ENCODER not in _ENCODER:
            from politune.models.loading import load_model

            model, tok = load_model(ENCODER, device="cpu", dtype="float32")
            model.eval()
            _ENCODER[ENCODER] = (model, tok)
        return _ENCODER[ENCODER]


def encoder_precision() -> str:
    """The dtype the encoder computes in on this machine: ``bfloat16`` (autocast over fp32 weights) where the
    CPU runs bf16 fast (:func:`politune.hardware.pick_dtype`), else ``float32``. Results record it."""
    import torch

    from politune.hardware import pick_dtype

    return "bfloat16" if pick_dtype("auto", "cpu") == torch.bfloat16 else "float32"


def features(
    texts: Sequence[str], prompts: Sequence[str] | None, layers: Sequence[int]
) -> dict[int, np.ndarray]:
    """Mean-pooled hidden states of each (prompt, answer) chat turn: ``{layer: (n, hidden)}``, rows in input order.

    Batches are formed longest first, so a batch pads little (~20% less time than input order). The encoder's
    weights are fp32; where the CPU runs bf16 fast (:func:`politune.hardware.pick_dtype`) the forward runs under
    bf16 autocast: 1.75x faster here, leans within 0.0007 / 0.002 (mean abs, economic / social) of fp32 on the
    440 gold answers and the same sign accuracy on both halves (docs/judges.md)."""
    import torch

    from politune.models.generation import format_chat

    model, tok = _encoder()
    prompts = list(prompts) if prompts is not None else [""] * len(texts)
    chats = [
        format_chat(
            tok,
            [{"role": "user", "content": p}, {"role": "assistant", "content": t}],
            add_generation_prompt=False,
        )
        for p, t in zip(prompts, texts, strict=True)
    ]
    # tokenized once (cut to MAX_TOKENS), then padded per batch
    enc_all = tok(chats, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS) if chats else None
    ids: list[list[int]] = enc_all["input_ids"] if enc_all is not None else []
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: dict[int, np.ndarray] = {layer: np.zeros((len(chats), model.config.hidden_size)) for layer in layers}
    bf16 = encoder_precision() == "bfloat16"
    old_side, tok.padding_side = tok.padding_side, "right"
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for s in range(0, len(order), _BATCH):
                rows = order[s : s + _BATCH]
                enc = tok.pad({"input_ids": [ids[i] for i in rows]}, padding=True, return_tensors="pt")
                # logits only at the last position: the LM head over every position would be ~1/5 of the work
                hidden = model(**enc, output_hidden_states=True, logits_to_keep=1).hidden_states
                mask = enc["attention_mask"].unsqueeze(-1).float()
                for layer in layers:
                    pooled = (hidden[layer].float() * mask).sum(1) / mask.sum(1)
                    out[layer][rows] = pooled.numpy().astype(np.float64)
    finally:
        tok.padding_side = old_side
    return out


_FEATURE_MEMO: dict[tuple[str, str], dict[int, np.ndarray]] = {}  # (prompt, text) -> layer -> features
_FEATURE_MEMO_MAX = 20_000


def memo_features(texts: Sequence[str], prompts: Sequence[str], layer: int) -> np.ndarray:
    """:func:`features` of every layer in :data:`LAYERS` at once, memoized per (prompt, text) within a process,
    so scoring the same answers on both axes runs the encoder once."""
    keys = list(zip(prompts, texts, strict=True))
    todo = list(dict.fromkeys(k for k in keys if k not in _FEATURE_MEMO))
    if todo:
        layers = sorted(set(LAYERS.values()) | {layer})
        feats = features([t for _, t in todo], [p for p, _ in todo], layers)
        if len(_FEATURE_MEMO) + len(todo) > _FEATURE_MEMO_MAX:
            _FEATURE_MEMO.clear()
        for n, k in enumerate(todo):
            _FEATURE_MEMO[k] = {lay: feats[lay][n] for lay in layers}
    if any(layer not in _FEATURE_MEMO.get(k, {}) for k in keys):  # memo cleared mid-call, or another layer
        return features(list(texts), list(prompts), [layer])[layer]
    return np.stack([_FEATURE_MEMO[k][layer] for k in keys])


# ------------------------------------------------------------------------------------------------- probe
@dataclass
class AxisProbe:
    """Standardisation + three-class logistic regression for one axis (classes -1, 0, +1)."""

    layer: int
    mean: np.ndarray  # (hidden,)
    scale: np.ndarray  # (hidden,)
    coef: np.ndarray  # (3, hidden), rows in class order -1, 0, +1
    intercept: np.ndarray  # (3,)

    def lean(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        lean: np.ndarray = p[:, 2] - p[:, 0]  # numpy types a column of an untyped array as Any
        return lean

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AxisProbe:
        return cls(
            int(d["layer"]),
            *(np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")),
        )


def fit_axis_probe(x: np.ndarray, labels: Sequence[int], layer: int, c: float) -> AxisProbe:
    """Standardise ``x`` (features of ``layer``) and fit a logistic regression on the labels' signs (classes
    -1, 0, +1; deterministic: lbfgs from zeros)."""
    from sklearn.linear_model import LogisticRegression

    y = np.sign(labels).astype(int)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8
    clf = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
    order = [list(clf.classes_).index(k) for k in (-1, 0, 1)]
    return AxisProbe(layer, mean, scale, clf.coef_[order], clf.intercept_[order])


def fit_probe(rows: Sequence[LeanExample]) -> dict[str, AxisProbe]:
    """Fit one :class:`AxisProbe` per axis on ``rows``."""
    feats = features([r.text for r in rows], [r.prompt for r in rows], sorted(set(LAYERS.values())))
    out = {}
    for axis in AXES:
        labels = [getattr(r, axis) for r in rows]
        if set(np.sign(labels)) != {-1, 0, 1}:
            raise PolituneError(f"lean corpus: axis {axis} needs examples of left, neutral and right")
        out[axis] = fit_axis_probe(feats[LAYERS[axis]], labels, LAYERS[axis], C[axis])
    return out


def shipped_probe_path() -> Path:
    return Path(str(resources.files("politune.measure") / "corpus" / "probe-v1.json"))


def save_probe(
    path: Path, probe: dict[str, AxisProbe], corpus_hash: str, version: str = SCORER_VERSION
) -> None:
    """Write fitted probes (by name: an axis, or ``agreement``) tied to their corpus by hash."""
    doc = {
        "version": version,
        "corpus_hash": corpus_hash,
        "axes": {a: p.to_dict() for a, p in probe.items()},
    }
    atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))


def _read_probe(path: Path, corpus_hash: str, version: str) -> dict[str, AxisProbe] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != version or doc.get("corpus_hash") != corpus_hash:
            return None
        return {a: AxisProbe.from_dict(d) for a, d in doc["axes"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s probe %s unreadable (%s); refitting", version, path, e)
        return None


def load_or_fit(
    version: str, corpus_hash: str, shipped: Path, fit: Callable[[], dict[str, AxisProbe]]
) -> dict[str, AxisProbe]:
    """The probes of ``version`` fitted on the corpus of ``corpus_hash``: the shipped file when it belongs to
    that corpus, else a fit cached in ``$POLITUNE_HOME/stance/``, else ``fit()`` now (and cached)."""
    cached = politune_home() / "stance" / f"{version}-{corpus_hash}.json"
    for path in (shipped, cached):
        if path.is_file() and (probe := _read_probe(path, corpus_hash, version)) is not None:
            return probe
    log.info("fitting the %s probe on its corpus (once)", version)
    probe = fit()
    save_probe(cached, probe, corpus_hash, version)
    return probe


_FITTED: dict[str, dict[str, AxisProbe]] = {}  # corpus hash -> probe, shared within a process


class OfflineStanceScorer:
    """A :class:`~politune.measure.scorer.StanceScorer` that needs no network: a probe on SmolLM2's hidden
    states fitted on the lean corpus (see the module docstring). Empty answers and refusals score ``None``.

    ``corpus``: a lean-corpus JSONL to fit on instead of the shipped one (fitted once, cached).
    """

    name = SCORER_VERSION

    def __init__(self, corpus: str | Path | None = None, score_refusals: bool = False):
        self._corpus = corpus
        self.score_refusals = score_refusals
        self._probe: dict[str, AxisProbe] | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """What the encoder computes in here (:func:`encoder_precision`)."""
        return encoder_precision()

    def probe(self) -> dict[str, AxisProbe]:
        with self._lock:
            if self._probe is None:
                self._probe = self._load_or_fit()
            return self._probe

    def _load_or_fit(self) -> dict[str, AxisProbe]:
        rows = load_corpus(self._corpus)
        key = _corpus_hash(rows)
        if key not in _FITTED:
            _FITTED[key] = load_or_fit(SCORER_VERSION, key, shipped_probe_path(), lambda: fit_probe(rows))
        return _FITTED[key]

    def lean(
        self, texts: Sequence[str], axis: str, prompts: Sequence[str] | None = None
    ) -> list[float | None]:
        if axis not in AXES:
            raise PolituneError(f"unknown axis {axis!r}: expected one of {AXES}")
        if prompts is not None and len(prompts) != len(texts):
            raise PolituneError(f"lean: {len(texts)} texts but {len(prompts)} prompts")
        from politune.measure.refusal import is_refusal

        keep = [
            i
            for i, t in enumerate(texts)
            if t is not None and t.strip() and (self.score_refusals or not is_refusal(t))
        ]
        out: list[float | None] = [None] * len(texts)
        if not keep:
            return out
        probe = self.probe()[axis]
        x = memo_features(
            [texts[i] for i in keep], [prompts[i] if prompts is not None else "" for i in keep], probe.layer
        )
        for i, v in zip(keep, probe.lean(x), strict=True):
            out[i] = float(v)
        return out
