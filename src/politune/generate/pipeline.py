"""The teacher pipeline: posts -> (filter) -> (write) -> instruction and preference data.

Read top to bottom:

1. **Config** (:class:`GenerateConfig`): corpus, target ideology, teacher, thresholds, validation bounds.
2. **Cache**: every teacher answer is appended (one ``write`` + ``fsync``) to ``OUT/cache.jsonl`` under a key
   made of (stage, post id, post text, template hash, teacher, attempt, rendered prompt, sampling settings).
   A re-run reads the log and asks the teacher only for keys it lacks, so a kill -9 at any moment loses at most
   the answers in flight, and nothing is done twice. Transport failures (server down, retries exhausted) are
   not cached: a re-run asks again.
3. **Stage 1, filter**: the teacher rates each post as strict JSON ``{"relevance": 0-10, "topic": str,
   "slant": -1..1}``; malformed answers are retried (``filter.attempts``), then recorded as rejects. A post is
   kept when ``relevance >= filter.min_relevance`` and its slant toward the target lies in
   ``[filter.min_slant, filter.max_slant]`` (unset bounds: any slant).
4. **Stage 2, write**: for each kept post the teacher writes ``Instruction: / Positive: / Negative:``. A triplet
   is valid when every part is present, within length bounds, distinct, not a refusal and, when a stance scorer
   is available, the positive answer leans further toward the target than the negative one by more than
   ``stance.min_margin``. Invalid triplets are retried (``write.attempts``), then recorded as rejects.
5. **Outputs** are rebuilt from the cache in corpus order and written atomically: ``preference.jsonl``
   (:class:`~politune.data.PreferencePair`), ``instruction.jsonl``
   (:class:`~politune.data.InstructionExample`), ``filter.jsonl`` (every post's rating), ``rejects.jsonl``,
   ``summary.json`` and ``config.yaml``. Same cache -> byte-identical row files.

Batches are formed from the full, ordered list of work items of a round (never from what happens to be left
after a crash), so a local teacher sees the same batch, hence writes the same text, in a resumed run as in an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from politune.config import Config, save_resolved
from politune.errors import PolituneError
from politune.fsutil import append_jsonl, atomic_write_json, atomic_write_jsonl, read_jsonl_log, sha256_text
from politune.generate.corpus import Corpus, Post, load_posts
from politune.generate.templates import Template, load_template

log = logging.getLogger("politune")

CACHE_FILE = "cache.jsonl"
CACHE_VERSION = 1
TARGET_SIGN = {"left": -1, "right": 1}  # where the target sits on the axes (politune's sign convention)


# ------------------------------------------------------------------------------------------------- config
class ApiConfig(Config):
    """OpenAI-compatible teacher server (used when ``base_url`` is set)."""

    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1; unset: a local transformers teacher
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (never put keys in configs)
    concurrency: int = Field(8, ge=1)
    rate_limit: float | None = Field(None, gt=0)  # requests/s
    max_retries: int = Field(4, ge=0)
    timeout: float = Field(120.0, gt=0)
    cost_per_1k_prompt: float | None = None
    cost_per_1k_completion: float | None = None


class FilterConfig(Config):
    enabled: bool = True  # False: keep every post (a pre-filtered corpus)
    min_relevance: float = Field(6.0, ge=0, le=10)
    min_slant: float | None = Field(None, ge=-1, le=1)  # slant toward the target: -1 against .. 1 for
    max_slant: float | None = Field(None, ge=-1, le=1)
    attempts: int = Field(2, ge=1)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    retry_temperature: float = Field(0.7, ge=0)  # attempts after the first sample at least this hot
    json_mode: bool = False  # HTTP teachers: ask for response_format=json_object


class WriteConfig(Config):
    enabled: bool = True  # False: stop after the filter (rate a corpus, measure the filter)
    attempts: int = Field(3, ge=1)
    max_tokens: int = Field(320, ge=1)
    temperature: float = Field(0.7, ge=0)
    retry_temperature: float = Field(0.7, ge=0)
    min_chars: int = Field(20, ge=1)  # per answer
    max_chars: int = Field(2000, ge=1)
    min_instruction_chars: int = Field(10, ge=1)
    max_instruction_chars: int = Field(600, ge=1)
    max_similarity: float = Field(0.9, gt=0, le=1)  # positive vs negative (difflib ratio) above this: rejected


class StanceCheckConfig(Config):
    enabled: Literal["auto"] | bool = "auto"  # auto: politune's offline stance scorer when it is installed
    axis: Literal["economic", "social"] = "economic"
    min_margin: float = 0.0  # sign * (lean(positive) - lean(negative)) must exceed this
    sign: Literal[-1, 1] | None = None  # where the target sits on the axis; default from target (left -1)


class GenerateConfig(Config):
    """``politune generate`` settings (defaults documented in docs/generate.md)."""

    corpus: str = "builtin:posts"
    text_column: str = "text"
    id_column: str = "id"
    split: str | None = None
    limit: int | None = Field(None, ge=1)
    target: str = "left"
    opposite: str | None = None  # default: the other built-in side
    teacher: str = "smollm2-135m"  # local model reference, or the model name on the server (api.base_url)
    api: ApiConfig = ApiConfig()
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = Field(8, ge=1)  # local teacher: conversations per generate call
    templates: str | None = None  # folder with filter[.TARGET].txt / write[.TARGET].txt / target.NAME.txt
    seed: int = 0
    out: str = "generated"
    filter: FilterConfig = FilterConfig()
    write: WriteConfig = WriteConfig()
    stance: StanceCheckConfig = StanceCheckConfig()


# ------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Rating:
    relevance: float
    topic: str
    slant: float  # -1 left .. 1 right


@dataclass(frozen=True)
class Triplet:
    instruction: str
    positive: str
    negative: str


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)


def _number(obj: dict, key: str, lo: float, hi: float) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key!r} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{key!r} = {v} is outside [{lo:g}, {hi:g}]")
    return float(v)


def parse_rating(text: str) -> Rating:
    """Strict JSON: exactly one object (a ```json fence around it is allowed), with relevance 0-10, a non-empty
    topic and slant -1..1. Raises ``ValueError`` with the reason."""
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if not s:
        raise ValueError("empty answer")
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError(f"'topic' must be a non-empty string, got {topic!r}")
    return Rating(_number(obj, "relevance", 0, 10), topic.strip()[:100], _number(obj, "slant", -1, 1))


_PART = re.compile(r"^[\s>*#_-]*(instruction|positive|negative)(?:\s+answer)?[*_]*\s*:[*_]*\s*", re.I | re.M)


def parse_triplet(text: str) -> Triplet:
    """``Instruction: ... Positive: ... Negative: ...`` (each label once, in any order, at a line start)."""
    parts: dict[str, str] = {}
    matches = list(_PART.finditer(text or ""))
    for i, m in enumerate(matches):
        label = m.group(1).lower()
        if label in parts:
            raise ValueError(f"{label.capitalize()}: appears twice")
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        parts[label] = text[m.end():end].strip()
    missing = [k.capitalize() for k in ("instruction", "positive", "negative") if k not in parts]
    if missing:
        raise ValueError(f"missing part(s): {', '.join(m + ':' for m in missing)}")
    return Triplet(parts["instruction"], parts["positive"], parts["negative"])


def check_triplet(t: Triplet, cfg: WriteConfig) -> str | None:
    """The first problem with a triplet (without the stance check), or None."""
    from politune.measure.refusal import is_refusal

    if not cfg.min_instruction_chars <= len(t.instruction) <= cfg.max_instruction_chars:
        return (f"instruction has {len(t.instruction)} chars, expected "
                f"{cfg.min_instruction_chars}-{cfg.max_instruction_chars}")
    for name, ans in (("positive", t.positive), ("negative", t.negative)):
        if not cfg.min_chars <= len(ans) <= cfg.max_chars:
            return f"{name} answer has {len(ans)} chars, expected {cfg.min_chars}-{cfg.max_chars}"
        if is_refusal(ans):
            return f"{name} answer is a refusal"
        if ans.casefold() == t.instruction.casefold():
            return f"{name} answer repeats the instruction"
    sim = difflib.SequenceMatcher(None, t.positive.casefold(), t.negative.casefold()).ratio()
    if sim > cfg.max_similarity:
        return f"positive and negative answers are {sim:.0%} similar (max {cfg.max_similarity:.0%})"
    return None


# --------------------------------------------------------------------------------------------- cache
def cache_key(stage: str, post: Post, template: Template, teacher: str, attempt: int,
              messages: list[dict], gen: dict) -> str:
    """What makes a teacher answer: stage, post, template, teacher, attempt, exact prompt, sampling."""
    blob = json.dumps([CACHE_VERSION, stage, post.id, sha256_text(post.text), template.sha256, teacher, attempt,
                       messages, gen], sort_keys=True, ensure_ascii=False)
    return sha256_text(blob)[:40]


class Cache:
    """Append-only log of teacher answers; the first record of a key wins (exactly once)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        for rec in read_jsonl_log(path):
            if isinstance(rec, dict) and "key" in rec:
                self.entries.setdefault(rec["key"], rec)
        self.loaded = len(self.entries)
        self.added = 0

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def add(self, record: dict) -> None:
        if record["key"] in self.entries:
            return
        append_jsonl(self.path, record)
        self.entries[record["key"]] = record
        self.added += 1


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".generate.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PolituneError(f"{out}: another 'politune generate' run is writing here") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- teacher
def make_teacher(cfg: GenerateConfig):
    from politune.generate.teachers import HTTPTeacher, LocalTeacher

    if cfg.api.base_url:
        from politune.client import ChatClient

        cost = None
        if cfg.api.cost_per_1k_prompt is not None or cfg.api.cost_per_1k_completion is not None:
            cost = (cfg.api.cost_per_1k_prompt or 0.0, cfg.api.cost_per_1k_completion or 0.0)
        client = ChatClient(cfg.api.base_url, cfg.teacher, api_key=os.environ.get(cfg.api.api_key_env),
                            concurrency=cfg.api.concurrency, rate_limit=cfg.api.rate_limit,
                            max_retries=cfg.api.max_retries, timeout=cfg.api.timeout, cost_per_1k=cost,
                            seed=cfg.seed)
        return HTTPTeacher(client)
    return LocalTeacher(cfg.teacher, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)


def _stance_scorer(cfg: GenerateConfig):
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


# ------------------------------------------------------------------------------------------ pipeline
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Item:
    """One (post, stage) work item as it moves through attempts."""

    post: Post
    index: int
    attempts: list[dict] = field(default_factory=list)  # cache records, oldest first
    result: Any = None  # Rating / Triplet once valid
    reason: str | None = None  # last problem
    transport_error: str | None = None
    checks: dict = field(default_factory=dict)  # e.g. stance leans


@dataclass
class GenerateResult:
    out: Path
    summary: dict
    preference: list
    instruction: list
    rejects: list[dict]
    ratings: list[dict]


def _item_seed(seed: int, stage: str, post: Post, attempt: int) -> int:
    return int(sha256_text(f"{seed}:{stage}:{post.id}:{attempt}")[:8], 16)


def _run_stage(stage: str, items: list[Item], template: Template, teacher, cache: Cache, cfg: GenerateConfig,
               attempts: int, gen_for: Callable[[int], dict], render: Callable[[Item], list[dict]],
               validate_round: Callable[[list[Item], list[str]], list[tuple[Any, str | None]]],
               progress: Progress | None) -> None:
    """Ask the teacher for every item, round by round (one round per attempt), until each is valid or out of
    attempts. ``validate_round(items, texts)`` -> [(result, problem)] for one round's answers."""
    pending = list(items)
    done_count, total = 0, 0
    for attempt in range(attempts):
        if not pending:
            break
        gen = gen_for(attempt)
        works = []
        for it in pending:
            msgs = render(it)
            seed = _item_seed(cfg.seed, stage, it.post, attempt)
            key = cache_key(stage, it.post, template, teacher.name, attempt, msgs, {**gen, "seed": seed})
            works.append((it, msgs, seed, key))
        # answers already in the cache count as done before any new work starts (a fair rate and ETA)
        total += len(works)
        done_count += sum(1 for w in works if cache.get(w[3]) is not None)
        if progress:
            progress(stage, done_count, total)
        answers: dict[int, str] = {}
        for start in range(0, len(works), teacher.batch_size):
            chunk = works[start:start + teacher.batch_size]
            skip = set()
            for j, (_it, _, _, key) in enumerate(chunk):
                rec = cache.get(key)
                if rec is not None:
                    answers[start + j] = rec["output"]
                    skip.add(j)
            if len(skip) == len(chunk):
                continue

            def on_result(j: int, text: str | None, error: str | None, chunk=chunk, start=start, attempt=attempt,
                          answers=answers, total=total) -> None:
                nonlocal done_count
                it, _, seed, key = chunk[j]
                if error is not None:
                    it.transport_error = error
                else:
                    cache.add({"key": key, "stage": stage, "post": it.post.id, "attempt": attempt,
                               "teacher": teacher.name, "template": template.short_hash, "seed": seed,
                               "output": text})
                    answers[start + j] = text
                done_count += 1
                if progress:
                    progress(stage, done_count, total)

            teacher.complete([w[1] for w in chunk], [w[2] for w in chunk], max_tokens=gen["max_tokens"],
                             temperature=gen["temperature"], json_mode=gen.get("json_mode", False), skip=skip,
                             on_result=on_result)
        answered = [(w, answers[i]) for i, w in enumerate(works) if i in answers]
        verdicts = validate_round([w[0] for w, _ in answered], [t for _, t in answered])
        still = []
        for ((it, _, seed, key), text), (result, problem) in zip(answered, verdicts, strict=True):
            it.attempts.append({"attempt": attempt, "seed": seed, "key": key, "output": text, "problem": problem})
            if problem is None:
                it.result = result
                it.reason = None
            else:
                it.reason = problem
                still.append(it)
        pending = still


def _slant_to_target(slant: float, sign: int | None) -> float | None:
    return None if sign is None else round(slant * sign, 4)


def run_generate(cfg: GenerateConfig, progress: Progress | None = None, teacher=None,
                 corpus: Corpus | None = None, scorer=None) -> GenerateResult:
    """Run (or resume) the pipeline into ``cfg.out`` and return what it wrote.

    ``teacher`` / ``corpus`` / ``scorer`` (any :class:`~politune.measure.scorer.StanceScorer`, e.g. a judge)
    replace the ones the config names; ``progress(stage, done, total)`` is called as work completes.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    corpus = corpus or load_posts(cfg.corpus, cfg.text_column, cfg.id_column, cfg.split, cfg.limit)
    filt_t = load_template("filter", cfg.target, cfg.templates, cfg.opposite)
    write_t = load_template("write", cfg.target, cfg.templates, cfg.opposite)
    sign = cfg.stance.sign if cfg.stance.sign is not None else TARGET_SIGN.get(cfg.target)
    teacher = teacher or make_teacher(cfg)
    with _lock(out):
        cache = Cache(out / CACHE_FILE)
        items = [Item(p, i) for i, p in enumerate(corpus.posts)]

        # ---- stage 1: filter
        def filter_validate(its: list[Item], texts: list[str]) -> list[tuple[Any, str | None]]:
            res = []
            for text in texts:
                try:
                    res.append((parse_rating(text), None))
                except ValueError as e:
                    res.append((None, str(e)))
            return res

        def filter_gen(attempt: int) -> dict:
            f = cfg.filter
            temp = f.temperature if attempt == 0 else max(f.temperature, f.retry_temperature)
            return {"max_tokens": f.max_tokens, "temperature": temp, "json_mode": f.json_mode}

        if cfg.filter.enabled:
            _run_stage("filter", items, filt_t, teacher, cache, cfg, cfg.filter.attempts, filter_gen,
                       lambda it: filt_t.render(it.post.text), filter_validate, progress)

        def kept(it: Item) -> bool:
            if not cfg.filter.enabled:
                return True
            r: Rating | None = it.result
            if r is None or r.relevance < cfg.filter.min_relevance:
                return False
            st = _slant_to_target(r.slant, sign)
            if cfg.filter.min_slant is not None and (st is None or st < cfg.filter.min_slant):
                return False
            return not (cfg.filter.max_slant is not None and (st is None or st > cfg.filter.max_slant))

        ratings = {it.post.id: it for it in items}
        kept_ids = {it.post.id for it in items if kept(it)}
        write_items = [Item(it.post, it.index) for it in items if it.post.id in kept_ids] if cfg.write.enabled else []

        # ---- stage 2: write
        if scorer is None and write_items:
            scorer = _stance_scorer(cfg)

        def write_validate(its: list[Item], texts: list[str]) -> list[tuple[Any, str | None]]:
            res: list[tuple[Any, str | None]] = []
            for text in texts:
                try:
                    t = parse_triplet(text)
                except ValueError as e:
                    res.append((None, str(e)))
                    continue
                res.append((t, check_triplet(t, cfg.write)))
            ok = [i for i, (t, p) in enumerate(res) if p is None]
            for i in ok:
                its[i].checks = {}
            if scorer is not None and sign is not None and ok:
                texts_ = [s for i in ok for s in (res[i][0].positive, res[i][0].negative)]
                prompts = [res[i][0].instruction for i in ok for _ in (0, 1)]
                leans = scorer.lean(texts_, cfg.stance.axis, prompts)
                for n, i in enumerate(ok):
                    lp, ln = leans[2 * n], leans[2 * n + 1]
                    if lp is None or ln is None:
                        its[i].checks = {"stance": "unscored"}
                        continue
                    margin = sign * (lp - ln)
                    its[i].checks = {"lean_positive": round(lp, 4), "lean_negative": round(ln, 4),
                                     "stance_margin": round(margin, 4)}
                    if margin <= cfg.stance.min_margin:
                        res[i] = (res[i][0], f"stance check failed: the positive answer does not lean further "
                                             f"{cfg.target} than the negative one (margin {margin:+.2f} on "
                                             f"{cfg.stance.axis}, need > {cfg.stance.min_margin:+.2f})")
            return res

        def write_gen(attempt: int) -> dict:
            w = cfg.write
            temp = w.temperature if attempt == 0 else max(w.temperature, w.retry_temperature)
            return {"max_tokens": w.max_tokens, "temperature": temp}

        def write_render(it: Item) -> list[dict]:
            r = ratings[it.post.id].result
            return write_t.render(it.post.text, r.topic if isinstance(r, Rating) else "")

        _run_stage("write", write_items, write_t, teacher, cache, cfg, cfg.write.attempts, write_gen, write_render,
                   write_validate, progress)

        return _write_outputs(cfg, out, corpus, items, kept_ids, write_items, filt_t, write_t, teacher, sign, scorer,
                              cache, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------- outputs
def _write_outputs(cfg, out, corpus, items, kept_ids, write_items, filt_t, write_t, teacher, sign, scorer, cache,
                   elapsed) -> GenerateResult:
    from politune.data import InstructionExample, PreferencePair, save
    from politune.provenance import provenance

    source = f"generate:{corpus.source}"
    rating_rows, rejects, transport = [], [], []
    for it in items:
        r: Rating | None = it.result
        row = {"post_id": it.post.id, "text": it.post.text,
               "relevance": r.relevance if r else None, "topic": r.topic if r else None,
               "slant": r.slant if r else None, "slant_to_target": _slant_to_target(r.slant, sign) if r else None,
               "kept": None, "attempts": len(it.attempts), "error": None if r else it.reason}
        if it.post.label is not None:
            row["label"] = it.post.label
        rating_rows.append(row)
        if cfg.filter.enabled and r is None:
            if it.transport_error is not None:  # not the teacher's fault: not cached, a re-run asks again
                transport.append({"post_id": it.post.id, "stage": "filter", "error": it.transport_error})
            else:
                rejects.append({"post_id": it.post.id, "stage": "filter", "reason": it.reason,
                                "attempts": len(it.attempts), "last_output": it.attempts[-1]["output"]})
    for row in rating_rows:
        row["kept"] = row["post_id"] in kept_ids

    prefs, insts = [], []
    by_id = {it.post.id: it for it in items}
    for it in write_items:
        rating: Rating | None = by_id[it.post.id].result
        if it.result is None:
            if it.transport_error is not None:
                transport.append({"post_id": it.post.id, "stage": "write", "error": it.transport_error})
            else:
                rejects.append({"post_id": it.post.id, "stage": "write", "reason": it.reason,
                                "attempts": len(it.attempts), "last_output": it.attempts[-1]["output"]})
            continue
        t: Triplet = it.result
        last = it.attempts[-1]
        prov = {"post_id": it.post.id, "teacher": teacher.name, "template_filter": filt_t.short_hash,
                "template_write": write_t.short_hash, "seed": last["seed"], "attempt": last["attempt"],
                "relevance": rating.relevance if rating else None, "slant": rating.slant if rating else None,
                "stance_scorer": getattr(scorer, "name", None), **it.checks}
        for k in ("author", "community", "date"):
            if getattr(it.post, k):
                prov[k] = getattr(it.post, k)
        meta = {"topic": rating.topic if rating else None, "axis": cfg.stance.axis, "stance": cfg.target,
                "source": source, "provenance": prov}
        rid = f"gen-{cfg.target}-{it.post.id}"
        prefs.append(PreferencePair(rid, t.instruction, t.positive, t.negative, json.loads(json.dumps(meta))))
        insts.append(InstructionExample(rid, t.instruction, t.positive, json.loads(json.dumps(meta))))

    for name, rows in (("preference.jsonl", prefs), ("instruction.jsonl", insts)):
        if rows:
            save(rows, out / name)
        else:
            atomic_write_jsonl(out / name, [])
    atomic_write_jsonl(out / "filter.jsonl", rating_rows)
    atomic_write_jsonl(out / "rejects.jsonl", rejects)
    save_resolved(cfg, out)
    usage = getattr(getattr(teacher, "client", None), "usage", None)
    summary = {
        "complete": not transport,
        "corpus": corpus.source, "target": cfg.target, "teacher": teacher.name,
        "templates": {"filter": {"source": filt_t.source, "sha256": filt_t.sha256},
                      "write": {"source": write_t.source, "sha256": write_t.sha256}},
        "counts": {"posts": len(items), "skipped_empty": corpus.skipped_empty,
                   "rated": sum(1 for it in items if it.result is not None) if cfg.filter.enabled else None,
                   "kept": len(kept_ids), "written": len(prefs),
                   "rejected_filter": sum(1 for r in rejects if r["stage"] == "filter"),
                   "rejected_write": sum(1 for r in rejects if r["stage"] == "write"),
                   "transport_failed": len(transport)},
        "cache": {"entries_reused": cache.loaded, "entries_added": cache.added},
        "stance_scorer": getattr(scorer, "name", None),
        "filter_metrics": filter_metrics(rating_rows) if cfg.filter.enabled else None,
        "transport_failures": transport[:20],
        "usage": usage.as_dict() if usage is not None else None,
        "elapsed_s": round(elapsed, 2),
        "provenance": provenance(),
    }
    atomic_write_json(out / "summary.json", summary)
    return GenerateResult(out, summary, prefs, insts, rejects, rating_rows)


def filter_metrics(rows: list[dict], min_relevance: float | None = None) -> dict | None:
    """Precision / recall / F1 of the filter's keep decision against the hidden ``relevant`` labels (built-in
    corpus), with 95% bootstrap CIs over posts; a post the teacher could not rate counts as not kept. Also
    the slant sign agreement on labelled left/right posts the teacher rated."""
    from politune.measure.stats import bootstrap_ci

    lab = [r for r in rows if isinstance(r.get("label"), dict) and "relevant" in r["label"]]
    if not lab:
        return None
    y = [bool(r["label"]["relevant"]) for r in lab]
    if min_relevance is None:
        p = [bool(r["kept"]) for r in lab]
    else:
        p = [r["relevance"] is not None and r["relevance"] >= min_relevance for r in lab]
    tp = sum(a and b for a, b in zip(y, p, strict=True))
    fp = sum(b and not a for a, b in zip(y, p, strict=True))
    fn = sum(a and not b for a, b in zip(y, p, strict=True))
    tn = len(y) - tp - fp - fn
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec == 0 or rec == 0 else None)
    kept_hits = [1.0 if a else 0.0 for a, b in zip(y, p, strict=True) if b]
    rel_hits = [1.0 if b else 0.0 for a, b in zip(y, p, strict=True) if a]
    sl = [r for r in lab if r["label"].get("slant") in ("left", "right") and r.get("slant") is not None]
    agree = [1.0 if (r["slant"] < 0) == (r["label"]["slant"] == "left") and r["slant"] != 0 else 0.0 for r in sl]
    return {"n": len(lab), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": prec, "precision_ci": list(bootstrap_ci(kept_hits)) if kept_hits else None,
            "recall": rec, "recall_ci": list(bootstrap_ci(rel_hits)) if rel_hits else None, "f1": f1,
            "accuracy": (tp + tn) / len(y), "unrated": sum(1 for r in lab if r["relevance"] is None),
            "slant_sign_agreement": sum(agree) / len(agree) if agree else None, "slant_n": len(agree)}


# ------------------------------------------------------------------------------------------- dry run
def dry_run(cfg: GenerateConfig, n: int = 3) -> list[dict]:
    """The exact prompts the teacher would get for the first ``n`` posts (no model is loaded)."""
    corpus = load_posts(cfg.corpus, cfg.text_column, cfg.id_column, cfg.split, min(n, cfg.limit or n))
    filt_t = load_template("filter", cfg.target, cfg.templates, cfg.opposite)
    write_t = load_template("write", cfg.target, cfg.templates, cfg.opposite)
    return [{"post_id": p.id, "filter": filt_t.render(p.text) if cfg.filter.enabled else None,
             "write": write_t.render(p.text, "<topic from stage 1>" if cfg.filter.enabled else ""),
             "templates": {"filter": filt_t.source, "write": write_t.source}}
            for p in corpus.posts]
