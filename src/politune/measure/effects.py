"""The side-effect measures as tasks (``politune.measure.task``): answer once, score many ways.

=============  =====================================  =================================  ===========================
task           dataset                                solver                             scorer
=============  =====================================  =================================  ===========================
``topics``     topic questions                        generate (``max_new_tokens``)      stance scorer / judge lean
``quality``    quality questions + neutral passages   generate (``qa_max_new_tokens``)   ROUGE-L vs reference;
                                                      + perplexity                       change vs base
``toxicity``   topic + quality questions              the same two generate solvers      toxicity classifier
``refusal``    topic questions                        generate (``max_new_tokens``)      keywords (+ judge)
=============  =====================================  =================================  ===========================

The generate solvers are wrapped in one :class:`~politune.measure.solvers.Cached` log (``OUT/answers.jsonl``),
so the four tasks share their answers (each is generated once), a killed run resumes where it stopped and a
re-run regenerates nothing. Each task writes ``<task>.json`` (``politune.measure.results``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from politune.config import Config
from politune.errors import PolituneError
from politune.measure.quality import load_qa, neutral_passages, quality_entry, rouge_l
from politune.measure.refusal import is_refusal, refusal_entry
from politune.measure.results import (
    QualityEntry,
    QualityResult,
    RefusalEntry,
    RefusalResult,
    Result,
    TargetInfo,
    TopicsEntry,
    TopicsResult,
    ToxicityEntry,
    ToxicityResult,
    write_result,
)
from politune.measure.scorer import StanceScorer
from politune.measure.solvers import AnswerLog, Cached, Generate, Perplexity, Route
from politune.measure.targets import Target
from politune.measure.task import (
    GENERATION_BATCH,
    Sample,
    Scored,
    ScoreWith,
    Solver,
    Task,
    run_record,
    run_tasks,
)
from politune.measure.topics import load_topic_questions, score_topic_answers
from politune.measure.toxicity import DEFAULT_CLASSIFIER, ToxicityClassifier, load_classifier, toxicity_entry
from politune.measure.validate_judge import validated_accuracy

if TYPE_CHECKING:
    from politune.measure.judge import Judge

MEASURES = ("topics", "quality", "toxicity", "refusal")


class EffectsOptions(Config):
    """Options of the side-effect measures (CLI flags of the same names; a study's ``measure.options``)."""

    topics_file: str = "builtin"  # topic questions (JSONL: id, topic, axis, question)
    qa_file: str = "builtin"  # quality questions: politune QA JSONL or ELI5
    qa_limit: int | None = Field(None, ge=1)  # use only the first N quality questions
    ppl_file: str = "builtin"  # neutral text for perplexity
    max_new_tokens: int = Field(64, ge=1)  # topic answers
    qa_max_new_tokens: int = Field(40, ge=1)  # quality answers (references are one sentence)
    batch_size: int = Field(GENERATION_BATCH, ge=1)
    device: str = "auto"
    dtype: str = "auto"
    toxicity_classifier: str = DEFAULT_CLASSIFIER
    toxicity_threshold: float = Field(0.5, ge=0.0, le=1.0)


class EffectsSettings(EffectsOptions):
    """Everything that decides a side-effects run (recorded in each result's ``settings``)."""

    seed: int = 0


# ------------------------------------------------------------------------------------------------ datasets


def topic_samples(path: str | Path = "builtin") -> list[Sample]:
    return [Sample(q.id, q.question, "topic", q) for q in load_topic_questions(path)]


def qa_samples(path: str | Path = "builtin", limit: int | None = None) -> list[Sample]:
    return [Sample(q.id, q.question, "qa", q) for q in load_qa(path, limit=limit)]


def passage_samples(path: str | Path = "builtin") -> list[Sample]:
    return [Sample(f"p{i:03d}", text, "passage") for i, text in enumerate(neutral_passages(path))]


# ------------------------------------------------------------------------------------------------ scorers


def topic_lean_scorer(stance: StanceScorer, seed: int = 0) -> ScoreWith[TopicsEntry]:
    """Lean of each topic answer on its question's axis (a :class:`StanceScorer`: offline or a judge's)."""

    def score(target: Target, samples: Sequence[Sample], outputs: Sequence[str | None]) -> TopicsEntry:
        return score_topic_answers(TargetInfo.of(target), [s.data for s in samples], outputs, stance, seed)

    return ScoreWith(stance.name, score)


@dataclass
class QualityScores:
    """One target's per-item ROUGE-L and perplexities (the change vs base is paired, in ``summarize``)."""

    rouge: list[float]
    ppl: list[float] | None
    answers: list[dict[str, Any]]


@dataclass
class RougeAndPerplexity:
    name: str = "rouge-l+perplexity"

    def score(self, target: Target, samples: Sequence[Sample], outputs: Sequence[Any]) -> QualityScores:
        qa = [(s, o) for s, o in zip(samples, outputs, strict=True) if s.kind == "qa"]
        ppl = [float(o) for s, o in zip(samples, outputs, strict=True) if s.kind == "passage"]
        rouge = rouge_l([o or "" for _, o in qa], [s.data.reference for s, _ in qa])
        return QualityScores(
            rouge,
            ppl or None,
            [{"id": s.id, "answer": o, "rouge_l": r} for (s, o), r in zip(qa, rouge, strict=True)],
        )


def toxicity_scorer(
    classifier: ToxicityClassifier, threshold: float = 0.5, seed: int = 0
) -> ScoreWith[ToxicityEntry]:
    """Each answer's toxicity by ``classifier``: the mean (CI) and the share above ``threshold``."""

    def score(target: Target, samples: Sequence[Sample], outputs: Sequence[str | None]) -> ToxicityEntry:
        entry = toxicity_entry(classifier.score([o or "" for o in outputs]), threshold, seed)
        return ToxicityEntry.model_validate({"target": TargetInfo.of(target), **entry})

    return ScoreWith(classifier.name, score)


def refusal_scorer(judge: Judge | None = None, seed: int = 0) -> ScoreWith[RefusalEntry]:
    """Keyword patterns, or'ed with the judge's refusal rubric when a judge is given."""

    def score(target: Target, samples: Sequence[Sample], outputs: Sequence[str | None]) -> RefusalEntry:
        texts = [o or "" for o in outputs]
        judged = judge.refusals(texts, [s.input for s in samples]) if judge is not None else None
        entry = refusal_entry([is_refusal(o) for o in outputs], judged, seed)
        return RefusalEntry.model_validate({"target": TargetInfo.of(target), **entry})

    return ScoreWith("keywords+judge" if judge is not None else "keywords", score)


# ------------------------------------------------------------------------------------------------ tasks


def _base_name(scored: Sequence[Scored[Any]]) -> str | None:
    return "base" if any(s.target.name == "base" and s.target.adapter is None for s in scored) else None


def _quality_summary(
    settings: EffectsSettings, n_qa: int, n_passages: int
) -> Callable[[list[Scored[QualityScores]]], QualityResult]:
    def summarize(scored: list[Scored[QualityScores]]) -> QualityResult:
        base = next((s.entry for s in scored if s.target.name == _base_name(scored)), None)
        models = []
        for s in scored:
            b = base if base is not None and s.entry is not base else None
            e = quality_entry(
                s.entry.rouge, s.entry.ppl, b.rouge if b else None, b.ppl if b else None, seed=settings.seed
            )
            models.append(
                QualityEntry.model_validate(
                    {"target": TargetInfo.of(s.target), **e, "answers": s.entry.answers}
                )
            )
        return QualityResult(
            qa_set=str(settings.qa_file),
            n_questions=n_qa,
            passage_set=str(settings.ppl_file),
            n_passages=n_passages,
            models=models,
            **run_record(settings, scored),
        )

    return summarize


def effects_tasks(
    settings: EffectsSettings,
    measures: Sequence[str] = MEASURES,
    scorer: StanceScorer | None = None,
    judge: Judge | None = None,
    log_path: str | Path | None = None,
) -> list[Task[Any, Result]]:
    """The chosen side-effect measures as tasks sharing one answer log. Loads every dataset, the stance scorer
    and the toxicity classifier now, so bad settings fail before any model is loaded."""
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise PolituneError(f"unknown measure {unknown[0]!r}: expected one of {', '.join(MEASURES)}")
    s = settings
    topics = topic_samples(s.topics_file) if {"topics", "toxicity", "refusal"} & set(measures) else []
    qa = qa_samples(s.qa_file, s.qa_limit) if {"quality", "toxicity"} & set(measures) else []
    passages = passage_samples(s.ppl_file) if "quality" in measures else []
    answers = AnswerLog(Path(log_path) if log_path is not None else None)
    topic_gen = Cached(Generate(s.max_new_tokens, seed=s.seed), answers)
    qa_gen = Cached(Generate(s.qa_max_new_tokens, seed=s.seed), answers)
    tasks: list[Task[Any, Result]] = []
    if "topics" in measures:
        tasks.append(_topics_task(s, topics, topic_gen, scorer or _judge_or_offline(judge), judge))
    if "quality" in measures:
        solver = Route({"qa": qa_gen, "passage": Cached(Perplexity(), answers)})
        tasks.append(
            Task(
                "quality",
                qa + passages,
                solver,
                RougeAndPerplexity(),
                _quality_summary(s, len(qa), len(passages)),
            )
        )
    if "toxicity" in measures:
        tasks.append(_toxicity_task(s, topics + qa, Route({"topic": topic_gen, "qa": qa_gen})))
    if "refusal" in measures:
        tasks.append(_refusal_task(s, topics, topic_gen, judge))
    return tasks


def _judge_report(judge: Judge | None) -> dict[str, Any]:
    return {"judge": judge.report()} if judge is not None else {}


def _judge_or_offline(judge: Judge | None) -> StanceScorer:
    return judge.stance_scorer() if judge is not None else _offline_scorer()


def _topics_task(
    s: EffectsSettings, samples: list[Sample], solver: Solver, stance: StanceScorer, judge: Judge | None
) -> Task[TopicsEntry, TopicsResult]:
    return Task(
        "topics",
        samples,
        solver,
        topic_lean_scorer(stance, s.seed),
        lambda sc: TopicsResult(
            scorer=stance.name,
            scorer_validation=validated_accuracy(stance.name),
            scorer_precision=getattr(stance, "precision", None),
            **_judge_report(judge),
            models=[x.entry for x in sc],
            **run_record(s, sc),
        ),
    )


def _toxicity_task(
    s: EffectsSettings, samples: list[Sample], solver: Solver
) -> Task[ToxicityEntry, ToxicityResult]:
    tox = toxicity_scorer(load_classifier(s.toxicity_classifier), s.toxicity_threshold, s.seed)
    return Task(
        "toxicity",
        samples,
        solver,
        tox,
        lambda sc: ToxicityResult(
            classifier=tox.name,
            threshold=s.toxicity_threshold,
            models=[x.entry for x in sc],
            **run_record(s, sc),
        ),
    )


def _refusal_task(
    s: EffectsSettings, samples: list[Sample], solver: Solver, judge: Judge | None
) -> Task[RefusalEntry, RefusalResult]:
    ref = refusal_scorer(judge, s.seed)
    return Task(
        "refusal",
        samples,
        solver,
        ref,
        lambda sc: RefusalResult(
            method=ref.name, **_judge_report(judge), models=[x.entry for x in sc], **run_record(s, sc)
        ),
    )


def _offline_scorer() -> StanceScorer:
    from politune.measure.stance import OfflineStanceScorer

    return OfflineStanceScorer()


def measure_effects(
    targets: Sequence[Target],
    measures: Sequence[str] = MEASURES,
    out_dir: str | Path | None = None,
    scorer: StanceScorer | None = None,
    judge: Judge | None = None,
    settings: EffectsSettings | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, Result]:
    """Run the chosen side-effect measures on ``targets``; returns ``{measure: typed result}`` and, with
    ``out_dir``, writes ``<measure>.json`` there atomically (answers are logged to ``answers.jsonl``).

    ``scorer``: a :class:`~politune.measure.scorer.StanceScorer` for topics (default: the judge's lean scorer
    when ``judge`` is given, else :class:`~politune.measure.stance.OfflineStanceScorer`). ``judge``: a
    :class:`~politune.measure.judge.Judge` (optional) used for topic leans and refusals.
    """
    settings = settings or EffectsSettings()
    if not targets:
        raise PolituneError("nothing to measure: no targets")
    out_path = Path(out_dir) if out_dir is not None else None
    tasks = effects_tasks(settings, measures, scorer, judge, out_path / "answers.jsonl" if out_path else None)
    if judge is not None:
        judge.check_direction()
    results = run_tasks(
        tasks,
        targets,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        on_progress=on_progress,
    )
    if out_path is not None:
        for name, res in results.items():
            write_result(res, out_path / f"{name}.json")
    return results
