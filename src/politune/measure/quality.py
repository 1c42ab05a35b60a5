"""Quality retention: does tuning cost the model its general ability?

- **ROUGE-L** (F-measure, stemmed) of each answer against a short reference answer, on a general question set:
  the built-in ``questions/quality-v1.jsonl`` (56 neutral, common-knowledge questions written for politune), a
  JSONL file of your own (``question`` / ``reference``), or ELI5 data you have locally (:func:`load_eli5`).
- **Perplexity** of the model on held-out neutral text (``questions/neutral-text-v1.txt``: short expository
  paragraphs written for politune, one passage per paragraph), per passage.
- Reported per target with a bootstrap CI, and as the paired change vs the ``base`` target with its CI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.measure.stats import bootstrap_ci, paired_diff_ci

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    reference: str


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) from JSONL / JSON list / CSV / Parquet."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        text = path.read_text("utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise PolituneError(f"{path}: not valid JSON ({e.msg})") from None
            return [(i + 1, d) for i, d in enumerate(data)]
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise PolituneError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        return out
    if suffix in {".csv", ".parquet"}:
        import pandas as pd

        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        return [(i + 2 if suffix == ".csv" else i + 1, r) for i, r in enumerate(df.to_dict("records"))]
    raise PolituneError(f"{path}: unsupported file type {suffix!r}: expected .jsonl, .json, .csv or .parquet")


def load_qa(path: str | Path = "builtin", limit: int | None = None) -> list[QAItem]:
    """A question / reference set: ``"builtin"``, a politune QA file (``id``?, ``question``, ``reference``) or
    an ELI5 file (detected by its ``answers`` field; see :func:`load_eli5`)."""
    if str(path) == "builtin":
        text = (resources.files("politune.measure") / "questions" / "quality-v1.jsonl").read_text("utf-8")
        items = [QAItem(**json.loads(line)) for line in text.splitlines() if line.strip()]
        return items[:limit] if limit else items
    p = Path(path)
    if not p.is_file():
        raise PolituneError(f"{p}: QA file not found")
    recs = _read_records(p)
    if recs and isinstance(recs[0][1], dict) and "answers" in recs[0][1]:
        return load_eli5(p, limit=limit)
    out = []
    for n, d in recs:
        if not isinstance(d, dict):
            raise PolituneError(f"{p}:{n}: expected an object with question and reference")
        for field in ("question", "reference"):
            if not isinstance(d.get(field), str) or not d[field].strip():
                raise PolituneError(f"{p}:{n}: {field}: expected a non-empty string")
        out.append(QAItem(str(d.get("id", f"qa{n:04d}")), d["question"], d["reference"]))
    if not out:
        raise PolituneError(f"{p}: no QA items")
    return out[:limit] if limit else out


def load_eli5(path: str | Path, limit: int | None = None, max_reference_words: int = 120) -> list[QAItem]:
    """ELI5 (Reddit "Explain Like I'm Five") in its published schema, from a local file: ``q_id``, ``title``
    (the question), ``selftext``, ``answers`` = ``{"a_id": [...], "text": [...], "score": [...]}``. The
    reference is the highest-scored answer, cut to ``max_reference_words`` words. Rows with no answer are
    skipped; a row without ``title`` or with a malformed ``answers`` is an error naming its line."""
    p = Path(path)
    if not p.is_file():
        raise PolituneError(f"{p}: ELI5 file not found")
    out = []
    for n, d in _read_records(p):
        if not isinstance(d, dict):
            raise PolituneError(f"{p}:{n}: expected an ELI5 object")
        title = d.get("title")
        if not isinstance(title, str) or not title.strip():
            raise PolituneError(f"{p}:{n}: title: expected the question text")
        answers = d.get("answers")
        if not isinstance(answers, dict) or "text" not in answers:
            raise PolituneError(f"{p}:{n}: answers: expected an object with 'text' (and 'score') lists")
        texts = list(answers.get("text") or [])
        score = answers.get("score")
        scores = list(score) if score is not None else [0] * len(texts)
        if len(scores) != len(texts):
            raise PolituneError(f"{p}:{n}: answers: 'text' and 'score' have different lengths")
        if not texts:
            continue
        best = max(range(len(texts)), key=lambda i: (scores[i], -i))
        ref = " ".join(str(texts[best]).split()[:max_reference_words])
        out.append(QAItem(str(d.get("q_id", f"eli5-{n}")), title.strip(), ref))
        if limit and len(out) >= limit:
            break
    if not out:
        raise PolituneError(f"{p}: no ELI5 rows with answers")
    return out


def neutral_passages(path: str | Path = "builtin") -> list[str]:
    """Held-out neutral text for perplexity, one passage per blank-line-separated paragraph."""
    if str(path) == "builtin":
        text = (resources.files("politune.measure") / "questions" / "neutral-text-v1.txt").read_text("utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise PolituneError(f"{p}: perplexity text file not found")
        text = p.read_text("utf-8")
    passages = [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]
    if not passages:
        raise PolituneError(f"{path}: no text for perplexity")
    return passages


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure (with stemming) per prediction."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [
        scorer.score(ref, pred or "")["rougeL"].fmeasure
        for pred, ref in zip(predictions, references, strict=True)
    ]


def perplexities(
    model: CausalLM, tokenizer: Tokenizer, passages: Sequence[str], max_length: int = 512, batch_size: int = 4
) -> list[float]:
    """Perplexity of each passage (plain text, no chat template; the first token is context only)."""
    import torch

    device = next(model.parameters()).device
    out: list[float] = []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(passages), batch_size):
            chunk = list(passages[start : start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.inference_mode():
                logits = model(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
                ).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].float()
            nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask
            for row_nll, row_mask in zip(nll, mask, strict=True):
                n = float(row_mask.sum())
                out.append(math.exp(float(row_nll.sum()) / n) if n > 0 else float("nan"))
    finally:
        tokenizer.padding_side = old_side
    return out


def _mean_ci(values: Sequence[float], seed: int) -> dict[str, Any]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    lo, hi = bootstrap_ci(vals, seed=seed)
    return {"mean": sum(vals) / len(vals) if vals else None, "ci": [lo, hi]}


def quality_entry(
    rouge: Sequence[float] | None,
    ppl: Sequence[float] | None,
    base_rouge: Sequence[float] | None = None,
    base_ppl: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One target's quality.json entry (without ``target``). ``base_*``: the base target's per-item values
    for the paired change; ``None`` for the base itself (its ``delta_vs_base`` is ``null``)."""
    entry: dict[str, Any] = {}
    if rouge is not None:
        entry["rouge_l"] = {**_mean_ci(rouge, seed), "n": len(rouge)}
    if ppl is not None:
        entry["perplexity"] = {**_mean_ci(ppl, seed), "n": len(ppl)}
    delta: dict[str, Any] | None = None
    if base_rouge is not None or base_ppl is not None:
        delta = {}
        if rouge is not None and base_rouge is not None:
            d, (lo, hi) = paired_diff_ci(base_rouge, rouge, seed=seed)
            delta["rouge_l"] = {"diff": d, "ci": [lo, hi]}
        if ppl is not None and base_ppl is not None:
            d, (lo, hi) = paired_diff_ci(base_ppl, ppl, seed=seed)
            delta["perplexity"] = {"diff": d, "ci": [lo, hi]}
    entry["delta_vs_base"] = delta
    return entry
