"""An LLM judge over any OpenAI-compatible API (OpenAI, vLLM, Ollama, ``politune serve``).

Pieces, top to bottom:

- :class:`Rubric`: a YAML file in ``rubrics/`` (``lean``: position on an axis, -5..5; ``stance``: agreement
  with a proposition, 5 labels + refusal; ``refusal``: true/false), with a version that is part of the cache key.
- :func:`render`: the rubric's prompt with the response **delimited and quoted**: the response is written as a
  JSON string (newlines and quotes escaped) between ``<response-TAG>`` markers whose TAG is derived from the
  response's hash, so text inside a response can neither close the block nor pass for the rater's own
  instructions; the rubric tells the judge to ignore instructions inside it.
- :func:`parse_verdict`: **strict JSON**: one object with the rubric's field, value type and range checked.
  A bad reply is re-asked (bounded, ``output_retries``) with the problem named, then recorded as missing with
  its reason, never counted as a score. HTTP failures (429, 5xx, timeouts) are retried with exponential
  backoff by the shared client (:class:`politune.client.ChatClient`), then recorded as missing likewise.
- :class:`JudgeCache`: an append-only on-disk cache keyed by (judge model, rubric name + version, prompt,
  response, rubric fields): a re-run costs nothing.
- :class:`Judge`: rates many items concurrently (bounded, rate-limited, temperature 0), accounts tokens / cost /
  time, runs the **direction check** (a known-left and a known-right text per axis must be ordered, else
  :class:`~politune.errors.PolituneError`), and gives a :class:`~politune.measure.scorer.StanceScorer`.

The tests' fake judge server (answers the rubrics offline) is ``tests/offline_judge.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from politune.client import ChatClient, ChatError, ClientOptions, run_sync
from politune.errors import PolituneError
from politune.fsutil import append_jsonl, politune_home, read_jsonl_log, sha256_text
from politune.measure.scorer import AXES

log = logging.getLogger("politune")


# ------------------------------------------------------------------------------------------------ rubrics
@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    system: str
    user: str
    output: dict[str, Any]  # field, kind (scale | label | bool), min / max / normalize, labels
    axes: dict[str, Any] = field(default_factory=dict)  # axis -> description (lean rubric)
    direction_check: dict[str, Any] = field(default_factory=dict)  # axis -> [{prompt, left, right}]
    path: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"


def load_rubric(name: str) -> Rubric:
    """A built-in rubric by name (``lean``, ``stance``, ``refusal``, or ``lean-v1``), or a YAML file path."""
    import yaml

    if name.endswith((".yaml", ".yml")):
        p = Path(name)
        if not p.is_file():
            raise PolituneError(f"rubric file {name} not found")
        text, where = p.read_text("utf-8"), str(p)
    else:
        base = name if re.search(r"-v\d+$", name) else f"{name}-v1"
        folder = resources.files("politune.measure") / "rubrics"
        ref = folder / f"{base}.yaml"
        if not ref.is_file():
            known = sorted(f.name.rsplit("-v", 1)[0] for f in folder.iterdir() if f.name.endswith(".yaml"))
            raise PolituneError(
                f"unknown rubric {name!r}: expected one of {', '.join(known)} or a .yaml file"
            )
        text, where = ref.read_text("utf-8"), f"rubrics/{base}.yaml"
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolituneError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    for key in ("name", "version", "system", "user", "output"):
        if key not in d:
            raise PolituneError(f"{where}: {key}: missing")
    out = d["output"]
    if out.get("kind") not in ("scale", "label", "bool") or "field" not in out:
        raise PolituneError(f"{where}: output: expected field and kind scale | label | bool")
    return Rubric(
        str(d["name"]),
        str(d["version"]),
        d["system"],
        d["user"],
        out,
        d.get("axes") or {},
        d.get("direction_check") or {},
        where,
    )


def response_tag(response: str) -> str:
    return hashlib.sha256(response.encode("utf-8")).hexdigest()[:12]


def render(rubric: Rubric, response: str, **fields: str) -> list[dict[str, str]]:
    """The chat messages asking the judge to rate ``response`` (quoted and delimited, see module doc)."""
    values = {
        k: json.dumps(v, ensure_ascii=False) if k in ("prompt", "proposition") else v
        for k, v in fields.items()
    }
    if "axis" in fields:
        if fields["axis"] not in rubric.axes:
            raise PolituneError(f"rubric {rubric.id}: no description for axis {fields['axis']!r}")
        values["axis_description"] = " ".join(rubric.axes[fields["axis"]].split())
    values["tag"] = response_tag(response)
    values["response"] = json.dumps(response, ensure_ascii=False)
    try:
        user = string.Template(rubric.user).substitute(values)
    except KeyError as e:
        raise PolituneError(f"rubric {rubric.id}: placeholder ${e.args[0]} has no value") from None
    return [{"role": "system", "content": " ".join(rubric.system.split())}, {"role": "user", "content": user}]


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_verdict(rubric: Rubric, text: str | None) -> tuple[Any, str | None]:
    """``(value, None)`` for a valid reply, ``(None, problem)`` otherwise. Valid: exactly one JSON object
    (optionally in a ```json fence) whose rubric field has the right type and range."""
    if text is None or not text.strip():
        return None, "empty reply"
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    try:
        obj = json.loads(s)
    except ValueError:
        return None, f"not JSON: {text.strip()[:80]!r}"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    out = rubric.output
    key = out["field"]
    if key not in obj:
        return None, f"no {key!r} field"
    v = obj[key]
    if out["kind"] == "scale":
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or (isinstance(v, float) and not v.is_integer())
        ):
            return None, f"{key} {v!r} is not an integer"
        if not out["min"] <= v <= out["max"]:
            return None, f"{key} {v} out of range [{out['min']}, {out['max']}]"
        return int(v), None
    if out["kind"] == "label":
        if not isinstance(v, str) or v.strip().lower() not in out["labels"]:
            return None, f"{key} {v!r} is not one of {', '.join(out['labels'])}"
        return v.strip().lower(), None
    if not isinstance(v, bool):
        return None, f"{key} {v!r} is not true or false"
    return v, None


# -------------------------------------------------------------------------------------------------- cache
class JudgeCache:
    """Append-only JSONL cache of valid verdicts for one judge model (kill -9 safe; a torn line is skipped)."""

    def __init__(self, model: str, directory: str | Path | None = None):
        self.dir = Path(directory) if directory is not None else politune_home() / "judge-cache"
        self.path = self.dir / f"{sha256_text(model)[:16]}.jsonl"
        self.model = model
        self._data = {r["key"]: r for r in read_jsonl_log(self.path) if "key" in r}
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, rubric: Rubric, response: str, fields: dict[str, Any]) -> str:
        return sha256_text(
            json.dumps(
                [
                    model,
                    rubric.name,
                    rubric.version,
                    fields.get("prompt"),
                    response,
                    {k: v for k, v in sorted(fields.items()) if k != "prompt"},
                ],
                ensure_ascii=False,
            )
        )

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        rec = {"key": key, "model": self.model, **record}
        with self._lock:
            self._data[key] = rec
            append_jsonl(self.path, rec)

    def __len__(self) -> int:
        return len(self._data)


# -------------------------------------------------------------------------------------------------- judge
@dataclass
class Verdict:
    """One rating: ``value`` (int score, label or bool) or ``None`` with ``error`` saying why."""

    value: Any = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    raw: str | None = None


@dataclass
class JudgeStats:
    """What a judge did: items rated, cache hits, unrated items (and why), re-asks, time."""

    items: int = 0
    cache_hits: int = 0
    missing_reasons: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    output_retries: int = 0
    seconds: float = 0.0


def parse_judge_spec(spec: str, model: str | None = None) -> tuple[str, str]:
    """``URL/MODEL`` (split after ``/v1``: ``http://127.0.0.1:8000/v1/gpt-4o``), or ``URL`` with ``model``."""
    if not spec.startswith(("http://", "https://")):
        raise PolituneError(f"--judge {spec!r}: expected URL/MODEL, e.g. http://127.0.0.1:8000/v1/MODEL")
    if model:
        return spec.rstrip("/"), model
    i = spec.find("/v1/")
    if i < 0 or not spec[i + 4 :].strip("/"):
        raise PolituneError(f"--judge {spec!r}: no model name after /v1/ (use URL/v1/MODEL or --judge-model)")
    return spec[: i + 3], spec[i + 4 :].strip("/")


JUDGE_CLIENT = ClientOptions(concurrency=4, max_retries=3)  # a judge's requests, unless told otherwise


class Judge:
    """An LLM judge. ``base_url`` / ``model`` / ``api_key`` default to ``$POLITUNE_JUDGE_URL`` /
    ``$POLITUNE_JUDGE_MODEL`` / ``$OPENAI_API_KEY``.

    Args:
        client: how requests are made (:class:`~politune.client.ClientOptions`: concurrency, rate limit, HTTP
            retries on 429 / 5xx / timeouts, timeout, ``cost_per_1k`` for the cost report); default
            :data:`JUDGE_CLIENT` (4 in flight, 3 retries).
        output_retries: re-asks after an invalid reply (default 2). max_tokens: reply budget (default 64).
        cache_dir: verdict cache (default ``$POLITUNE_HOME/judge-cache``); ``use_cache=False`` to bypass.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        client: ClientOptions = JUDGE_CLIENT,
        output_retries: int = 2,
        max_tokens: int = 64,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ):
        base_url = base_url or os.environ.get("POLITUNE_JUDGE_URL")
        model = model or os.environ.get("POLITUNE_JUDGE_MODEL")
        if not base_url or not model:
            raise PolituneError(
                "judge: no base URL / model (pass --judge URL/v1/MODEL or set POLITUNE_JUDGE_URL and POLITUNE_JUDGE_MODEL)"
            )
        self.client = ChatClient(base_url, model, api_key=api_key, options=client)
        self.model = model
        self.output_retries = output_retries
        self.max_tokens = max_tokens
        self.cache = JudgeCache(model, cache_dir) if use_cache else None
        self.stats = JudgeStats()
        self.direction: dict[str, list[dict[str, Any]]] = {}
        self._rubrics: dict[str, Rubric] = {}

    def label(self, rubric: str | None = None) -> str:
        """How results name this judge: ``judge:MODEL``, or ``judge:MODEL/RUBRIC`` when one rubric is used."""
        return f"judge:{self.model}/{rubric}" if rubric else f"judge:{self.model}"

    def rubric(self, name: str) -> Rubric:
        if name not in self._rubrics:
            self._rubrics[name] = load_rubric(name)
        return self._rubrics[name]

    # -- rating -----------------------------------------------------------------------------------------
    async def _rate_one(self, rubric: Rubric, response: str, fields: dict[str, Any]) -> Verdict:
        key = JudgeCache.key(self.model, rubric, response, fields)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return Verdict(hit["value"], None, True, 0, hit.get("raw"))
        messages = render(rubric, response, **fields)
        problem = None
        attempts = 0
        for attempt in range(self.output_retries + 1):
            attempts = attempt + 1
            res = await self.client.try_chat(messages, temperature=0.0, max_tokens=self.max_tokens)
            if isinstance(res, ChatError):
                return Verdict(None, f"request failed: {res.reason}", False, attempts)
            value, problem = parse_verdict(rubric, res.text)
            if problem is None:
                if self.cache is not None:
                    self.cache.put(key, {"rubric": rubric.id, "value": value, "raw": res.text})
                return Verdict(value, None, False, attempts, res.text)
            self.stats.output_retries += attempt < self.output_retries
            messages = [
                *messages[:2],
                {"role": "assistant", "content": res.text},
                {
                    "role": "user",
                    "content": f"That reply was invalid ({problem}). Reply with only the "
                    "JSON object the instructions ask for.",
                },
            ]
        return Verdict(None, f"invalid reply after {attempts} attempts: {problem}", False, attempts)

    async def arate(
        self, rubric: str | Rubric, responses: Sequence[str], fields: Sequence[dict[str, Any]]
    ) -> list[Verdict]:
        rub = rubric if isinstance(rubric, Rubric) else self.rubric(rubric)
        return list(
            await asyncio.gather(*(self._rate_one(rub, r, f) for r, f in zip(responses, fields, strict=True)))
        )

    def rate(
        self, rubric: str | Rubric, responses: Sequence[str], fields: Sequence[dict[str, Any]] | None = None
    ) -> list[Verdict]:
        """Rate every response with ``rubric`` (fields per item: prompt, axis, proposition as it needs)."""
        fields = list(fields) if fields is not None else [{} for _ in responses]
        t0 = time.perf_counter()
        verdicts = run_sync(lambda: self.arate(rubric, responses, fields))
        self.stats.seconds += time.perf_counter() - t0
        self.stats.items += len(verdicts)
        for v in verdicts:
            self.stats.cache_hits += v.cached
            if v.error is not None:
                self.stats.missing += 1
                self.stats.missing_reasons[v.error.split(":")[0]] += 1
        return verdicts

    # -- rubric-specific helpers ------------------------------------------------------------------------
    def lean(self, texts: Sequence[str], axis: str, prompts: Sequence[str] | None = None) -> list[Verdict]:
        if axis not in AXES:
            raise PolituneError(f"unknown axis {axis!r}: expected one of {AXES}")
        prompts = list(prompts) if prompts is not None else [""] * len(texts)
        rub = self.rubric("lean")
        return self.rate(rub, texts, [{"axis": axis, "prompt": p} for p in prompts])

    def stances(self, texts: Sequence[str], propositions: Sequence[str]) -> list[Verdict]:
        return self.rate("stance", texts, [{"proposition": p} for p in propositions])

    def refusals(self, texts: Sequence[str], prompts: Sequence[str]) -> list[bool | None]:
        return [
            v.value if v.error is None else None
            for v in self.rate("refusal", texts, [{"prompt": p} for p in prompts])
        ]

    def check_direction(self, axes: Sequence[str] = AXES) -> dict[str, list[dict[str, Any]]]:
        """Rate the lean rubric's known-left and known-right texts; stop with a clear error if the judge
        cannot order every pair (a flipped scale, or a judge that cannot follow the rubric)."""
        rub = self.rubric("lean")
        for axis in axes:
            if axis in self.direction:
                continue
            pairs = rub.direction_check.get(axis) or []
            if not pairs:
                raise PolituneError(f"rubric {rub.id}: no direction-check texts for axis {axis!r}")
            texts = [p[s] for p in pairs for s in ("left", "right")]
            prompts = [p["prompt"] for p in pairs for _ in (0, 1)]
            vs = self.lean(texts, axis, prompts)
            rows = []
            for i, p in enumerate(pairs):
                lv, rv = vs[2 * i], vs[2 * i + 1]
                rows.append(
                    {
                        "prompt": p["prompt"],
                        "left": lv.value,
                        "right": rv.value,
                        "errors": [v.error for v in (lv, rv) if v.error],
                    }
                )
                if lv.error or rv.error:
                    raise PolituneError(
                        f"judge {self.model}: direction check on {axis} could not run: {lv.error or rv.error}"
                    )
                if not lv.value < rv.value:
                    raise PolituneError(
                        f"judge {self.model}: direction check failed on the {axis} axis: it rated a known-left "
                        f"text {lv.value} and a known-right text {rv.value} (expected left < right); its scale "
                        "may be flipped or it cannot follow the rubric: use another judge model"
                    )
            self.direction[axis] = rows
        return self.direction

    def stance_scorer(self) -> JudgeStanceScorer:
        return JudgeStanceScorer(self)

    def report(self) -> dict[str, Any]:
        """What the judge did: model, rubric versions, direction check, items, cache hits, missing (with
        reasons), tokens, cost and seconds."""
        u = self.client.usage
        return {
            "model": self.model,
            "base_url": self.client.base_url,
            "rubrics": sorted(r.id for r in self._rubrics.values()),
            "direction_check": self.direction,
            "items": self.stats.items,
            "cache_hits": self.stats.cache_hits,
            "missing": self.stats.missing,
            "missing_reasons": dict(self.stats.missing_reasons),
            "output_retries": self.stats.output_retries,
            "requests": u.requests,
            "http_retries": u.retries,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "cost": round(u.cost, 6),
            "seconds": round(self.stats.seconds, 3),
        }


class JudgeStanceScorer:
    """The judge's lean rubric as a :class:`~politune.measure.scorer.StanceScorer` (score / 5 -> [-1, 1]).
    The direction check runs before the first rating; missing verdicts are ``None``."""

    def __init__(self, judge: Judge):
        self.judge = judge
        self.name = judge.label(judge.rubric("lean").id)

    def lean(
        self, texts: Sequence[str], axis: str, prompts: Sequence[str] | None = None
    ) -> list[float | None]:
        self.judge.check_direction([axis])
        norm = float(self.judge.rubric("lean").output.get("normalize", 5))
        return [
            None if v.error is not None else max(-1.0, min(1.0, v.value / norm))
            for v in self.judge.lean(texts, axis, prompts)
        ]
