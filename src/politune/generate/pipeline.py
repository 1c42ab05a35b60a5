"""The teacher pipeline: posts -> (filter) -> (write) -> instruction and preference data.

Read top to bottom; each step has its own module:

1. **Config** (:class:`~politune.generate.config.GenerateConfig`): corpus, target ideology, teacher,
   thresholds, validation bounds.
2. **Cache** (``cache.py``): every teacher answer is appended to ``OUT/cache.jsonl``; a re-run asks the teacher
   only for answers it lacks, so a kill -9 at any moment loses at most the answers in flight, and nothing is done
   twice. Transport failures (server down, retries exhausted) are not cached: a re-run asks again.
3. **Stage 1, filter**: the teacher rates each post as strict JSON ``{"relevance": 0-10, "topic": str,
   "slant": -1..1}`` (``parsing.py``); malformed answers are retried (``filter.attempts``), then recorded as
   rejects. A post is kept when ``relevance >= filter.min_relevance`` and its slant toward the target lies in
   ``[filter.min_slant, filter.max_slant]`` (unset bounds: any slant).
4. **Stage 2, write**: for each kept post the teacher writes ``Instruction: / Positive: / Negative:``. A triplet
   is valid when every part is present, within length bounds, distinct, not a refusal and, when a stance scorer
   is available, the positive answer leans further toward the target than the negative one by more than
   ``stance.min_margin``. Invalid triplets are retried (``write.attempts``), then recorded as rejects. Both
   stages run through ``stages.run_stage``.
5. **Outputs** (``outputs.py``) are rebuilt in corpus order and written atomically: ``preference.jsonl``
   (:class:`~politune.data.PreferencePair`), ``instruction.jsonl``
   (:class:`~politune.data.InstructionExample`), ``filter.jsonl`` (every post's rating), ``rejects.jsonl``,
   ``summary.json`` and ``config.yaml``. Same cache -> byte-identical row files.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.generate.cache import CACHE_FILE, Cache, output_lock
from politune.generate.config import TARGET_SIGN, GenerateConfig
from politune.generate.corpus import Corpus, load_posts
from politune.generate.outputs import GenerateResult, Run, slant_to_target, write_outputs
from politune.generate.parsing import Rating, check_triplet, parse_rating, parse_triplet
from politune.generate.stages import Item, Progress, Stage, Verdict, run_stage
from politune.generate.teachers import Teacher
from politune.generate.templates import load_template

if TYPE_CHECKING:
    from politune.measure.scorer import StanceScorer

log = logging.getLogger("politune")


def make_teacher(cfg: GenerateConfig) -> Teacher:
    from politune.generate.teachers import HTTPTeacher, LocalTeacher

    if cfg.api.base_url:
        from politune.client import ChatClient, ClientOptions

        cost = None
        if cfg.api.cost_per_1k_prompt is not None or cfg.api.cost_per_1k_completion is not None:
            cost = (cfg.api.cost_per_1k_prompt or 0.0, cfg.api.cost_per_1k_completion or 0.0)
        options = ClientOptions(
            concurrency=cfg.api.concurrency,
            rate_limit=cfg.api.rate_limit,
            max_retries=cfg.api.max_retries,
            timeout=cfg.api.timeout,
            cost_per_1k=cost,
            seed=cfg.seed,
        )
        client = ChatClient(
            cfg.api.base_url, cfg.teacher, api_key=os.environ.get(cfg.api.api_key_env), options=options
        )
        return HTTPTeacher(client)
    return LocalTeacher(cfg.teacher, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)


def _stance_scorer(cfg: GenerateConfig) -> StanceScorer | None:
    if cfg.stance.enabled is False:
        return None
    try:
        from politune.measure.stance import OfflineStanceScorer

        return OfflineStanceScorer()
    except (ImportError, PolituneError) as e:
        if cfg.stance.enabled is True:
            raise PolituneError(f"stance check requested but no stance scorer is available ({e})") from None
        log.info("stance check skipped: no stance scorer (%s)", e)
        return None


# ------------------------------------------------------------------------------------------- stage 1: filter
def _filter_stage(run: Run) -> Stage:
    f = run.cfg.filter

    def sampling(attempt: int) -> dict[str, Any]:
        temp = f.temperature if attempt == 0 else max(f.temperature, f.retry_temperature)
        return {"max_tokens": f.max_tokens, "temperature": temp, "json_mode": f.json_mode}

    def validate(items: list[Item], texts: list[str]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for text in texts:
            try:
                verdicts.append((parse_rating(text), None))
            except ValueError as e:
                verdicts.append((None, str(e)))
        return verdicts

    return Stage(
        "filter",
        run.filter_template,
        f.attempts,
        sampling,
        lambda it: run.filter_template.render(it.post.text),
        validate,
    )


def _kept(run: Run, it: Item) -> bool:
    f = run.cfg.filter
    if not f.enabled:
        return True
    r: Rating | None = it.result
    if r is None or r.relevance < f.min_relevance:
        return False
    st = slant_to_target(r.slant, run.sign)
    if f.min_slant is not None and (st is None or st < f.min_slant):
        return False
    return not (f.max_slant is not None and (st is None or st > f.max_slant))


# ------------------------------------------------------------------------------------------- stage 2: write
def _stance_check(run: Run, items: list[Item], verdicts: list[Verdict]) -> None:
    """Fail the valid triplets whose positive answer does not lean further toward the target than the negative
    one (by more than ``stance.min_margin``); record the leans on the items."""
    cfg, sign = run.cfg, run.sign
    ok = [i for i, (_, p) in enumerate(verdicts) if p is None]
    for i in ok:
        items[i].checks = {}
    if run.scorer is None or sign is None or not ok:
        return
    texts = [s for i in ok for s in (verdicts[i][0].positive, verdicts[i][0].negative)]
    prompts = [verdicts[i][0].instruction for i in ok for _ in (0, 1)]
    leans = run.scorer.lean(texts, cfg.stance.axis, prompts)
    for n, i in enumerate(ok):
        lp, ln = leans[2 * n], leans[2 * n + 1]
        if lp is None or ln is None:
            items[i].checks = {"stance": "unscored"}
            continue
        margin = sign * (lp - ln)
        items[i].checks = {
            "lean_positive": round(lp, 4),
            "lean_negative": round(ln, 4),
            "stance_margin": round(margin, 4),
        }
        if margin <= cfg.stance.min_margin:
            verdicts[i] = (
                verdicts[i][0],
                f"stance check failed: the positive answer does not lean further "
                f"{cfg.target} than the negative one (margin {margin:+.2f} on "
                f"{cfg.stance.axis}, need > {cfg.stance.min_margin:+.2f})",
            )


def _write_stage(run: Run) -> Stage:
    w = run.cfg.write
    ratings = {it.post.id: it for it in run.items}

    def sampling(attempt: int) -> dict[str, Any]:
        temp = w.temperature if attempt == 0 else max(w.temperature, w.retry_temperature)
        return {"max_tokens": w.max_tokens, "temperature": temp}

    def render(it: Item) -> list[dict[str, str]]:
        r = ratings[it.post.id].result
        return run.write_template.render(it.post.text, r.topic if isinstance(r, Rating) else "")

    def validate(items: list[Item], texts: list[str]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for text in texts:
            try:
                t = parse_triplet(text)
            except ValueError as e:
                verdicts.append((None, str(e)))
                continue
            verdicts.append((t, check_triplet(t, w)))
        _stance_check(run, items, verdicts)
        return verdicts

    return Stage("write", run.write_template, w.attempts, sampling, render, validate)


# ------------------------------------------------------------------------------------------- the pipeline
def run_generate(
    cfg: GenerateConfig,
    progress: Progress | None = None,
    teacher: Teacher | None = None,
    corpus: Corpus | None = None,
    scorer: StanceScorer | None = None,
) -> GenerateResult:
    """Run (or resume) the pipeline into ``cfg.out`` and return what it wrote.

    ``teacher`` / ``corpus`` / ``scorer`` (any :class:`~politune.measure.scorer.StanceScorer`, e.g. a judge)
    replace the ones the config names; ``progress(stage, done, total)`` is called as work completes.
    """
    t0 = time.perf_counter()
    corpus = corpus or load_posts(cfg.corpus, cfg.text_column, cfg.id_column, cfg.split, cfg.limit)
    filt_t = load_template("filter", cfg.target, cfg.templates, cfg.opposite)
    write_t = load_template("write", cfg.target, cfg.templates, cfg.opposite)
    sign = cfg.stance.sign if cfg.stance.sign is not None else TARGET_SIGN.get(cfg.target)
    teacher = teacher or make_teacher(cfg)
    with output_lock(Path(cfg.out)) as out:
        run = Run(cfg, corpus, filt_t, write_t, teacher, Cache(out / CACHE_FILE), sign, scorer)
        run.items = [Item(p, i) for i, p in enumerate(corpus.posts)]
        if cfg.filter.enabled:
            run_stage(_filter_stage(run), run.items, teacher, run.cache, cfg.seed, progress)
        run.kept_ids = {it.post.id for it in run.items if _kept(run, it)}
        if cfg.write.enabled:
            run.write_items = [Item(it.post, it.index) for it in run.items if it.post.id in run.kept_ids]
        if run.scorer is None and run.write_items:
            run.scorer = _stance_scorer(cfg)
        run_stage(_write_stage(run), run.write_items, teacher, run.cache, cfg.seed, progress)
        return write_outputs(run, time.perf_counter() - t0)


def dry_run(cfg: GenerateConfig, n: int = 3) -> list[dict[str, Any]]:
    """The exact prompts the teacher would get for the first ``n`` posts (no model is loaded)."""
    corpus = load_posts(cfg.corpus, cfg.text_column, cfg.id_column, cfg.split, min(n, cfg.limit or n))
    filt_t = load_template("filter", cfg.target, cfg.templates, cfg.opposite)
    write_t = load_template("write", cfg.target, cfg.templates, cfg.opposite)
    return [
        {
            "post_id": p.id,
            "filter": filt_t.render(p.text) if cfg.filter.enabled else None,
            "write": write_t.render(p.text, "<topic from stage 1>" if cfg.filter.enabled else ""),
            "templates": {"filter": filt_t.source, "write": write_t.source},
        }
        for p in corpus.posts
    ]
