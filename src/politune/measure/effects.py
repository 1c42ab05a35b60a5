"""One entry point for the side-effect measures: answer once, score many ways.

For each target (base model, adapter, persona), :func:`collect` generates answers to the topic questions and
the quality questions (greedy, short: ``max_new_tokens`` ~64-96, batched) and computes perplexity on the
neutral passages. The measures then only score those answers:

- ``topics``   -> topics.json   (stance scorer: offline by default, or a judge);
- ``quality``  -> quality.json  (ROUGE-L vs references, perplexity, change vs base);
- ``toxicity`` -> toxicity.json (all answers, topic + quality);
- ``refusal``  -> refusal.json  (topic answers: keyword patterns, plus the judge when configured).

Answers are appended to ``OUT/answers.jsonl`` as each batch finishes, keyed by the target, the decoding
settings and the question, so a killed run resumes where it stopped and a re-run regenerates nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from politune.errors import PolituneError
from politune.fsutil import append_jsonl, atomic_write_json, read_jsonl_log, sha256_text
from politune.measure.quality import QAItem, load_qa, neutral_passages, perplexities, quality_entry, rouge_l
from politune.measure.refusal import is_refusal, refusal_entry
from politune.measure.targets import Target, iter_loaded
from politune.measure.topics import TopicQuestion, load_topic_questions, score_topic_answers, topics_result
from politune.measure.toxicity import DEFAULT_CLASSIFIER, load_classifier, toxicity_entry

log = logging.getLogger("politune")

MEASURES = ("topics", "quality", "toxicity", "refusal")


@dataclass
class EffectsSettings:
    """Settings of a side-effects run (CLI flags of the same names; defaults documented here)."""

    topics_file: str = "builtin"  # topic questions (JSONL: id, topic, axis, question)
    qa_file: str = "builtin"  # quality questions: politune QA JSONL or ELI5
    qa_limit: int | None = None  # use only the first N quality questions
    ppl_file: str = "builtin"  # neutral text for perplexity
    max_new_tokens: int = 64  # topic answers
    qa_max_new_tokens: int = 40  # quality answers (references are one sentence)
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    toxicity_classifier: str = DEFAULT_CLASSIFIER
    toxicity_threshold: float = 0.5

    def decoding_key(self) -> str:
        return sha256_text(json.dumps([self.max_new_tokens, self.qa_max_new_tokens, self.seed, "greedy"]))[:12]


@dataclass
class TargetAnswers:
    """What one target produced: answers by question id, and perplexity per passage."""

    target: Target
    topic_answers: dict[str, str] = field(default_factory=dict)
    qa_answers: dict[str, str] = field(default_factory=dict)
    perplexity: list[float] | None = None
    seconds: float = 0.0


def _target_key(t: Target, settings: EffectsSettings) -> str:
    return sha256_text(json.dumps([t.to_dict(), settings.decoding_key()], sort_keys=True))[:16]


def collect(targets: Sequence[Target], settings: EffectsSettings, questions: Sequence[TopicQuestion] = (),
            qa: Sequence[QAItem] = (), passages: Sequence[str] = (), log_path: str | Path | None = None,
            on_progress: Callable[[str, int], None] | None = None) -> dict[str, TargetAnswers]:
    """Generate every answer each target still lacks (resuming from ``log_path``) and compute perplexity."""
    from politune.models.generation import generate

    done: dict[tuple[str, str, str], object] = {}
    if log_path is not None:
        for rec in read_jsonl_log(log_path):
            done[(rec.get("key"), rec.get("set"), rec.get("id"))] = rec.get("value")
    out: dict[str, TargetAnswers] = {}
    for target, model, tok in iter_loaded(targets, device=settings.device, dtype=settings.dtype):
        t0 = time.perf_counter()
        key = _target_key(target, settings)
        ta = TargetAnswers(target)
        for set_name, items, max_new in (("topics", [(q.id, q.question) for q in questions],
                                          settings.max_new_tokens),
                                         ("qa", [(q.id, q.question) for q in qa], settings.qa_max_new_tokens)):
            answers = ta.topic_answers if set_name == "topics" else ta.qa_answers
            todo = []
            for qid, text in items:
                if (key, set_name, qid) in done:
                    answers[qid] = str(done[(key, set_name, qid)])
                else:
                    todo.append((qid, text))
            for start in range(0, len(todo), settings.batch_size):
                chunk = todo[start:start + settings.batch_size]
                gen = generate(model, tok, [text for _, text in chunk], system=target.system,
                               max_new_tokens=max_new, temperature=0.0, seed=settings.seed,
                               batch_size=settings.batch_size)
                for (qid, _), answer in zip(chunk, gen, strict=True):
                    answers[qid] = answer
                    if log_path is not None:
                        append_jsonl(log_path, {"key": key, "target": target.name, "set": set_name, "id": qid,
                                                "value": answer})
                if on_progress:
                    on_progress(target.name, len(chunk))
        if passages:
            if (key, "ppl", "all") in done:
                ta.perplexity = [float(x) for x in done[(key, "ppl", "all")]]
            else:
                ta.perplexity = perplexities(model, tok, passages)
                if log_path is not None:
                    append_jsonl(log_path, {"key": key, "target": target.name, "set": "ppl", "id": "all",
                                            "value": ta.perplexity})
        ta.seconds = time.perf_counter() - t0
        out[target.name] = ta
    return out


def _base_name(targets: Sequence[Target]) -> str | None:
    return "base" if any(t.name == "base" and t.adapter is None for t in targets) else None


def measure_effects(targets: Sequence[Target], measures: Sequence[str] = MEASURES, out_dir: str | Path | None = None,
                    scorer=None, judge=None, settings: EffectsSettings | None = None,
                    on_progress: Callable[[str, int], None] | None = None) -> dict[str, dict]:
    """Run the chosen side-effect measures on ``targets``; returns ``{measure: result}`` (the result files'
    content) and, with ``out_dir``, writes ``<measure>.json`` there atomically.

    ``scorer``: a :class:`~politune.measure.scorer.StanceScorer` for topics (default: the judge's lean scorer
    when ``judge`` is given, else :class:`~politune.measure.stance.OfflineStanceScorer`). ``judge``: a
    :class:`~politune.measure.judge.Judge` (optional) used for topic leans and refusals.
    """
    settings = settings or EffectsSettings()
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise PolituneError(f"unknown measure {unknown[0]!r}: expected one of {', '.join(MEASURES)}")
    if not targets:
        raise PolituneError("nothing to measure: no targets")
    need_topics = any(m in measures for m in ("topics", "toxicity", "refusal"))
    need_qa = any(m in measures for m in ("quality", "toxicity"))
    questions = load_topic_questions(settings.topics_file) if need_topics else []
    qa = load_qa(settings.qa_file, limit=settings.qa_limit) if need_qa else []
    passages = neutral_passages(settings.ppl_file) if "quality" in measures else []
    # Fail on bad scorer / judge / classifier settings before spending minutes on generation.
    if "topics" in measures and scorer is None:
        if judge is not None:
            scorer = judge.stance_scorer()
        else:
            from politune.measure.stance import OfflineStanceScorer

            scorer = OfflineStanceScorer()
    classifier = load_classifier(settings.toxicity_classifier) if "toxicity" in measures else None
    if judge is not None:
        judge.check_direction()

    out_path = Path(out_dir) if out_dir is not None else None
    log_path = out_path / "answers.jsonl" if out_path is not None else None
    answers = collect(targets, settings, questions, qa, passages, log_path=log_path, on_progress=on_progress)
    base = _base_name(targets)
    settings_dict = asdict(settings)
    results: dict[str, dict] = {}
    from politune.provenance import provenance

    if "topics" in measures:
        entries = []
        for t in targets:
            ta = answers[t.name]
            entries.append((t.to_dict(), score_topic_answers(questions, [ta.topic_answers[q.id] for q in questions],
                                                             scorer, seed=settings.seed)))
        results["topics"] = topics_result(entries, scorer.name, settings_dict)
        if judge is not None:
            results["topics"]["judge"] = judge.report()

    if "quality" in measures:
        per: dict[str, tuple[list[float], list[float] | None]] = {}
        for t in targets:
            ta = answers[t.name]
            per[t.name] = (rouge_l([ta.qa_answers[q.id] for q in qa], [q.reference for q in qa]), ta.perplexity)
        models = []
        for t in targets:
            r, p = per[t.name]
            br, bp = per[base] if base is not None and t.name != base else (None, None)
            models.append({"target": t.to_dict(), **quality_entry(r, p, br, bp, seed=settings.seed),
                           "answers": [{"id": q.id, "answer": answers[t.name].qa_answers[q.id], "rouge_l": s}
                                       for q, s in zip(qa, r, strict=True)]})
        results["quality"] = {"kind": "quality", "qa_set": str(settings.qa_file), "n_questions": len(qa),
                              "n_passages": len(passages), "provenance": provenance(), "settings": settings_dict,
                              "models": models}

    if "toxicity" in measures:
        models = []
        for t in targets:
            ta = answers[t.name]
            texts = [ta.topic_answers[q.id] for q in questions] + [ta.qa_answers[q.id] for q in qa]
            models.append({"target": t.to_dict(), **toxicity_entry(classifier.score(texts),
                                                                   settings.toxicity_threshold, settings.seed)})
        results["toxicity"] = {"kind": "toxicity", "classifier": classifier.name,
                               "threshold": settings.toxicity_threshold, "provenance": provenance(),
                               "settings": settings_dict, "models": models}

    if "refusal" in measures:
        models = []
        for t in targets:
            texts = [answers[t.name].topic_answers[q.id] for q in questions]
            kw = [is_refusal(x) for x in texts]
            jf = judge.refusals(texts, [q.question for q in questions]) if judge is not None else None
            models.append({"target": t.to_dict(), **refusal_entry(kw, jf, settings.seed)})
        results["refusal"] = {"kind": "refusal", "method": "keywords+judge" if judge is not None else "keywords",
                              "provenance": provenance(), "settings": settings_dict, "models": models}
        if judge is not None:
            results["refusal"]["judge"] = judge.report()

    for name, res in results.items():
        res["generation_seconds"] = {t.name: round(answers[t.name].seconds, 2) for t in targets}
        if out_path is not None:
            atomic_write_json(out_path / f"{name}.json", res)
    return results
