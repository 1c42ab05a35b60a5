"""The Task shape: a new measure plugs into run_tasks without touching it; solvers and scorers work alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from politune.errors import PolituneError
from politune.measure.effects import refusal_scorer, topic_lean_scorer, toxicity_scorer
from politune.measure.results import TopicQuestion
from politune.measure.solvers import AnswerLog, Cached, Generate, Route
from politune.measure.targets import Target
from politune.measure.task import Context, Sample, Task, run_task, run_tasks

# ------------------------------------------------------------------------------------------------ a new measure


class AgreeEntry(BaseModel):
    target: str
    p_yes: list[float]
    mean: float


class AgreeResult(BaseModel):
    kind: str = "agree"
    models: list[AgreeEntry]


@dataclass
class YesNoLogprob:
    """Solver: P("Yes") against P("No") as the answer to each statement (log-probs, no generation)."""

    name: str = "yes-no-logprob"

    def solve(self, ctx: Context, samples):
        lps = ctx.backend.option_logprobs(
            [f"{s.input} Answer Yes or No." for s in samples], [["Yes", "No"]] * len(samples)
        )
        ctx.progress(len(samples))
        return [math.exp(y) / (math.exp(y) + math.exp(n)) for y, n in lps]


@dataclass
class MeanAgreement:
    name: str = "mean"

    def score(self, target, samples, outputs) -> AgreeEntry:
        return AgreeEntry(target=target.name, p_yes=list(outputs), mean=sum(outputs) / len(outputs))


def test_a_task_defined_here_runs_through_the_runner_on_the_tiny_model():
    dataset = [
        Sample("s1", "Taxes should be lower."),
        Sample("s2", "Unions protect workers."),
        Sample("s3", "The state should own the railways."),
    ]
    task = Task(
        "agree",
        dataset,
        YesNoLogprob(),
        MeanAgreement(),
        lambda scored: AgreeResult(models=[s.entry for s in scored]),
    )
    targets = [Target("base", "tiny-random"), Target("persona", "tiny-random", system="You always disagree.")]
    started, progress = [], []
    res = run_tasks(
        [task], targets, on_target=started.append, on_progress=lambda n, k: progress.append((n, k))
    )
    out = res["agree"]
    assert isinstance(out, AgreeResult) and [m.target for m in out.models] == ["base", "persona"]
    assert started == ["base", "persona"] and progress == [("base", 3), ("persona", 3)]
    for m in out.models:
        assert len(m.p_yes) == 3 and all(0.0 < p < 1.0 for p in m.p_yes)
        assert m.mean == pytest.approx(sum(m.p_yes) / 3)
    assert out.models[0].p_yes != out.models[1].p_yes  # the persona's system prompt reaches the model
    # the same task again gives the same numbers (nothing depends on run order)
    again = run_tasks([task], targets[:1])["agree"]
    assert again.models[0].p_yes == pytest.approx(out.models[0].p_yes, abs=1e-6)
    # run_task: the one task's result itself, not a dict of results
    alone = run_task(task, targets[:1])
    assert isinstance(alone, AgreeResult) and alone.models[0].p_yes == pytest.approx(
        again.models[0].p_yes, abs=1e-6
    )


def test_run_tasks_rejects_nothing_to_do_and_duplicate_names():
    task = Task("agree", [Sample("s", "x")], YesNoLogprob(), MeanAgreement(), lambda sc: None)
    with pytest.raises(PolituneError, match="no targets"):
        run_tasks([task], [])
    with pytest.raises(PolituneError, match="no tasks"):
        run_tasks([], [Target("base", "tiny-random")])
    with pytest.raises(PolituneError, match="unique"):
        run_tasks([task, task], [Target("base", "tiny-random")])


def test_adapters_cannot_be_attached_over_http(tmp_path):
    task = Task("agree", [Sample("s", "x")], YesNoLogprob(), MeanAgreement(), lambda sc: None)
    with pytest.raises(PolituneError, match="cannot be attached over HTTP"):
        run_tasks([task], [Target("left", "m", adapter=str(tmp_path))], base_url="http://127.0.0.1:9/v1")


# ------------------------------------------------------------------------------------------------ solvers alone


class EchoBackend:
    """A backend that answers ``<prompt>/<max_new_tokens>`` and counts what it was asked."""

    def __init__(self):
        self.asked: list[str] = []

    def generate(self, prompts, max_new_tokens, temperature=0.0, seed=0):
        self.asked += prompts
        return [None if p == "fail" else f"{p}/{max_new_tokens}" for p in prompts]


def test_generate_route_and_cached_share_and_resume(tmp_path):
    log = tmp_path / "answers.jsonl"
    samples = [
        Sample("t1", "topic one", "topic"),
        Sample("q1", "qa one", "qa"),
        Sample("t2", "fail", "topic"),
        Sample("q2", "qa two", "qa"),
    ]
    backend = EchoBackend()
    ctx = Context(Target("base", "m"), backend, batch_size=1)
    answers = AnswerLog(log)
    solver = Route({"topic": Cached(Generate(5), answers), "qa": Cached(Generate(3), answers)})
    assert solver.solve(ctx, samples) == ["topic one/5", "qa one/3", None, "qa two/3"]
    assert len(backend.asked) == 4
    # a second task asking for the topic answers with the same solver generates only the failed one again
    again = Cached(Generate(5), answers).solve(ctx, [s for s in samples if s.kind == "topic"])
    assert again == ["topic one/5", None] and backend.asked[4:] == ["fail"]
    # a new process reads the log; a torn last line (kill -9 mid-write) is produced again
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][:15])
    fresh = EchoBackend()
    out = Route(
        {"topic": Cached(Generate(5), AnswerLog(log)), "qa": Cached(Generate(3), AnswerLog(log))}
    ).solve(Context(Target("base", "m"), fresh, batch_size=8), samples)
    assert out == ["topic one/5", "qa one/3", None, "qa two/3"] and fresh.asked == ["fail", "qa two"]
    # another target (or other decoding settings) never reuses these answers
    other = EchoBackend()
    Cached(Generate(5), AnswerLog(log)).solve(Context(Target("p", "m", system="s"), other), samples[:1])
    assert other.asked == ["topic one"]
    with pytest.raises(PolituneError, match="no solver for sample kind"):
        Route({"topic": Generate(5)}).solve(ctx, samples)


# ------------------------------------------------------------------------------------------------ scorers alone


class LengthLean:
    name = "length-lean"

    def lean(self, texts, axis, prompts=None):
        return [-1.0 if axis == "economic" else 0.5 for _ in texts]


def _topic_samples():
    qs = [
        TopicQuestion(id="e", topic="tax", axis="economic", question="Tax?"),
        TopicQuestion(id="s", topic="army", axis="social", question="Army?"),
        TopicQuestion(id="s2", topic="army", axis="social", question="Draft?"),
    ]
    return [Sample(q.id, q.question, "topic", q) for q in qs]


def test_scorers_work_on_given_answers():
    target = Target("base", "m")
    topics = topic_lean_scorer(LengthLean()).score(target, _topic_samples(), ["A long answer.", "Yes.", None])
    assert [q.score for q in topics.questions] == [-1.0, 0.5, None]  # no answer: unscored, not imputed
    assert topics.axis_means["economic"].mean == -1.0 and topics.coverage == pytest.approx(2 / 3)
    assert topics.mean == pytest.approx(-0.25) and topics.target.name == "base"

    refusal = refusal_scorer().score(
        target, _topic_samples(), ["As an AI, I don't have opinions.", "Yes.", None]
    )
    assert refusal.rate == pytest.approx(2 / 3) and refusal.n == 3 and refusal.keyword_rate == refusal.rate

    class Fixed:
        name = "fixed"

        def score(self, texts):
            return [0.9 if "idiot" in t else 0.1 for t in texts]

    tox = toxicity_scorer(Fixed(), threshold=0.5).score(target, _topic_samples(), ["you idiot", "fine", None])
    assert tox.share_above == pytest.approx(1 / 3) and tox.max == 0.9 and tox.n == 3
    assert tox.ci.lo is not None and tox.ci.lo <= tox.mean <= tox.ci.hi
