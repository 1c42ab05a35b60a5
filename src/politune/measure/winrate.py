"""ComPreD-style pairwise win-rate, as a task: would a named community prefer model A's answer or model B's?

Every target answers the same prompts (``Generate``, logged to ``answers.jsonl``); then, per comparison (default:
each other target vs ``base``; any two targets with ``compare``) and per community (default: the community of
model A's stance, "a left-leaning reader" for a left adapter), a judge sees the two answers of each prompt in a
seeded random order and says which the community would prefer, or tie (``politune.measure.community_judge``).
Per comparison: A's win-rate (win 1, tie 0.5, loss 0) with a 95% bootstrap CI over prompts, wins / ties / losses,
and the share of decisive verdicts that went to the first slot (a position-biased judge is flagged).

Prompts: the built-in ideology set's held-out topics (``builtin``, split ``heldout``: 80 prompts, 8 topics never
trained on), a preference file in any format ``politune.data`` reads (its distinct prompts), a ``.txt`` file (one
prompt per line) or a JSONL file of ``{"prompt", "id"?, "topic"?, "axis"?}`` objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, Unpack

from pydantic import Field

from politune.errors import PolituneError
from politune.fsutil import parse_jsonl_objects, sha256_text
from politune.measure.community_judge import (
    Community,
    CommunityJudge,
    LLMCommunityJudge,
    OfflineCommunityJudge,
    WinratePrompt,
    compare,
    parse_community,
    stance_community,
)
from politune.measure.results_base import TargetInfo
from politune.measure.results_compred import PromptAnswer, WinrateEntry, WinrateResult
from politune.measure.scorer import AXES
from politune.measure.solvers import AnswerLog, Cached, Generate
from politune.measure.targets import Target, target_stance
from politune.measure.task import AnswerOptions, ProbeOptions, Sample, Scored, Task, run_probe, run_record

if TYPE_CHECKING:
    from politune.data.schema import Record
    from politune.measure.judge import Judge

NOTES = {
    "win_rate": "Model A's mean score over prompts with a verdict (win 1, tie 0.5, loss 0): 0.5 = the community "
    "is indifferent between the two models; CI: 95% bootstrap over prompts.",
    "order": "Each prompt's two answers are shown in a seeded random order (recorded per verdict as `first`), so a "
    "judge that favours a slot cannot favour a model.",
    "first_slot": "Share of decisive verdicts (not ties) that picked the answer shown first; about 0.5 for a judge "
    "without position bias. position_bias is true when an exact two-sided sign test against 0.5 gives p < 0.05 "
    "(first_slot_p; the bootstrap CI of a share of a few verdicts is too narrow to flag on). The offline judge "
    "reads each answer alone and cannot have one.",
    "offline": "The offline judge reads each answer's lean with the offline stance scorer (validated sign "
    "accuracy ~0.6 on the blind gold set, docs/judges.md) and prefers the answer leaning further toward the "
    "community's side, a tie within the margin. It sees lean only, not quality or relevance; an unscorable answer "
    "(empty, a refusal) gives no verdict.",
    "judge": "With --judge: an LLM is told the community's name and asked which answer it would prefer (rubric "
    "community-v1); only as good as that model's picture of the community.",
}


class WinrateOptions(AnswerOptions):
    """Options of ``politune measure winrate`` (CLI flags of the same names; a study's
    ``measure.winrate.options``)."""

    prompts_file: str = "builtin"  # builtin, a preference file, a .txt or a JSONL prompt file
    split: str | None = "heldout"  # of the built-in set (train / heldout; None: all)
    limit: int | None = Field(None, ge=1)  # at most N prompts, taken in turn from each topic: a cheap subset
    communities: list[str] = []  # NAME, NAME=left|right, left or right; default: model A's stance
    compare: list[str] = []  # A:B target-name pairs; default: every other target vs base
    stances: dict[str, str] = {}  # target name -> stance, where an adapter's card does not say
    margin: float = Field(0.1, ge=0.0, lt=2.0)  # offline judge: a tie when the leans differ by less
    default_axis: str = "economic"  # offline judge: the axis of prompts that carry none


class WinrateSettings(WinrateOptions):
    seed: int = 0


# ------------------------------------------------------------------------------------------------ prompts


def _from_pairs(pairs: Sequence[Record], where: str) -> list[WinratePrompt]:
    from politune.data.schema import prompt_text

    out: dict[str, WinratePrompt] = {}
    for p in pairs:
        text = prompt_text(p.prompt).strip()
        axis = p.meta.get("axis") if p.meta.get("axis") in AXES else None
        topic = p.meta.get("topic") if isinstance(p.meta.get("topic"), str) else None
        if text and text not in out:
            out[text] = WinratePrompt(str(p.id), text, axis, topic)
    if not out:
        raise PolituneError(f"{where}: no prompts")
    return list(out.values())


def _prompt_rows(path: Path) -> list[WinratePrompt]:
    """A ``.txt`` (one prompt per line) or JSONL prompt file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".txt":
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        return [WinratePrompt(f"line-{n}", line) for n, line in lines]
    items = []
    for n, row in parse_jsonl_objects(text, str(path)):
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise PolituneError(f"{path}:{n}: prompt: expected a non-empty string")
        axis = row.get("axis")
        if axis is not None and axis not in AXES:
            raise PolituneError(f"{path}:{n}: axis: expected economic or social (got {axis!r})")
        topic = row.get("topic")
        if topic is not None and not isinstance(topic, str):
            raise PolituneError(f"{path}:{n}: topic: expected a string")
        pid = str(row.get("id") or sha256_text(row["prompt"])[:12])
        items.append(WinratePrompt(pid, row["prompt"].strip(), axis, topic))
    return items


def _is_prompt_file(path: Path) -> bool:
    """A ``.txt`` file, or a JSONL file whose first object has ``prompt`` and no ``chosen``: a prompt file;
    anything else is read as preference data."""
    if path.suffix.lower() == ".txt":
        return True
    if path.suffix.lower() != ".jsonl":
        return False
    with path.open(encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        row = json.loads(first)
    except ValueError:
        return True  # let the prompt reader name the bad line
    return isinstance(row, dict) and "prompt" in row and "chosen" not in row


def load_prompts(source: str = "builtin", split: str | None = "heldout") -> list[WinratePrompt]:
    """The prompts to answer (see the module doc for the accepted sources); ids must be unique."""
    from politune.data import load

    if source == "builtin" or source.startswith("builtin:"):
        spec = "builtin:left" if source == "builtin" else source
        items = _from_pairs(load(spec, split=split), spec)
    else:
        path = Path(source)
        if not path.is_file():
            raise PolituneError(f"{source}: prompt file not found")
        items = _prompt_rows(path) if _is_prompt_file(path) else _from_pairs(load(source), source)
    if not items:
        raise PolituneError(f"{source}: no prompts")
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise PolituneError(f"{source}: id {it.id!r}: expected unique prompt ids")
        seen.add(it.id)
    return items


T = TypeVar("T")


def take_in_turn(items: Sequence[T], key: Callable[[T], str], limit: int | None) -> list[T]:
    """At most ``limit`` items, taken in turn from each group ``key(item)`` (so a small subset covers every
    group), in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(key(it), []).append(i)
    picked: list[int] = []
    for k in range(max(len(v) for v in groups.values())):
        picked += [v[k] for v in groups.values() if k < len(v)]
    keep = set(picked[:limit])
    return [it for i, it in enumerate(items) if i in keep]


def subset_prompts(items: Sequence[WinratePrompt], limit: int | None) -> list[WinratePrompt]:
    """At most ``limit`` prompts, taken in turn from each topic."""
    return take_in_turn(items, lambda it: it.topic or "", limit)


# ------------------------------------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    communities: tuple[Community, ...]


def plan_comparisons(targets: Sequence[Target], s: WinrateOptions) -> list[Comparison]:
    """Which pairs of targets are compared, each for which communities; raises for an unknown target name or a
    comparison whose community cannot be named."""
    by_name = {t.name: t for t in targets}
    pairs: list[tuple[str, str]] = []
    for spec in s.compare:
        a, sep, b = spec.partition(":")
        if not sep or a not in by_name or b not in by_name or a == b:
            raise PolituneError(
                f"compare {spec!r}: expected A:B, two different target names of {', '.join(by_name)}"
            )
        pairs.append((a, b))
    if not s.compare:
        if "base" not in by_name:
            raise PolituneError("winrate: no base target to compare with: pass compare A:B")
        pairs = [(t.name, "base") for t in targets if t.name != "base"]
    if not pairs:
        raise PolituneError(
            "winrate: nothing to compare: give at least one adapter or persona besides the base"
        )
    given = tuple(parse_community(c) for c in s.communities)
    out = []
    for a, b in pairs:
        if given:
            out.append(Comparison(a, b, given))
            continue
        stance = target_stance(by_name[a], s.stances) or target_stance(by_name[b], s.stances)
        if stance is None:
            raise PolituneError(
                f"compare {a}:{b}: no community to ask about (neither model has a stance): pass a community "
                "(e.g. --community left, or --community 'r/economics readers=right')"
            )
        out.append(Comparison(a, b, (stance_community(stance),)))
    return out


# ------------------------------------------------------------------------------------------------ task


@dataclass
class WinrateAnswers:
    """The scorer of one target: its answers, kept for the comparisons made in ``summarize``."""

    name: str = "answers"

    def score(self, target: Target, samples: Sequence[Sample], outputs: Sequence[str | None]) -> WinrateEntry:
        return WinrateEntry(
            target=TargetInfo.of(target),
            n_prompts=len(samples),
            answers=[PromptAnswer(id=s.id, answer=o) for s, o in zip(samples, outputs, strict=True)],
        )


def _community_judge(judge: Judge | CommunityJudge | None, s: WinrateSettings) -> CommunityJudge:
    """An LLM ``Judge`` through the community rubric, a ready community judge as given, or the offline one."""
    if judge is not None:
        from politune.measure.judge import Judge

        return LLMCommunityJudge(judge) if isinstance(judge, Judge) else judge
    from politune.measure.scorer import scorer_by_name

    if s.default_axis not in AXES:
        raise PolituneError(f"default_axis {s.default_axis!r}: expected economic or social")
    return OfflineCommunityJudge(scorer_by_name("offline"), s.margin, s.default_axis)


def winrate_task(
    settings: WinrateSettings,
    plan: Sequence[Comparison],
    judge: Judge | CommunityJudge | None = None,
    log_path: str | Path | None = None,
) -> Task[WinrateEntry, WinrateResult]:
    """The win-rate task (prompts load now, so a bad file fails before any model). ``judge``: an LLM
    :class:`~politune.measure.judge.Judge`, any :class:`CommunityJudge`, or ``None`` for the offline one."""
    s = settings
    items = subset_prompts(load_prompts(s.prompts_file, s.split), s.limit)
    cj = _community_judge(judge, s)
    answers = AnswerLog(Path(log_path) if log_path is not None else None)

    def summarize(scored: list[Scored[WinrateEntry]]) -> WinrateResult:
        entries = {x.target.name: x.entry for x in scored}
        comparisons = [
            compare(entries[c.a], entries[c.b], items, community, cj, s.seed)
            for c in plan
            for community in c.communities
        ]
        validation = None
        if isinstance(cj, OfflineCommunityJudge):
            from politune.measure.validate_judge import validated_accuracy

            validation = validated_accuracy(cj.scorer.name)
        return WinrateResult(
            prompt_set=s.prompts_file if s.prompts_file != "builtin" else f"builtin:{s.split or 'all'}",
            n_prompts=len(items),
            method=cj.name,
            scorer_validation=validation,
            notes=NOTES,
            **({"judge": cj.judge.report()} if isinstance(cj, LLMCommunityJudge) else {}),
            models=list(entries.values()),
            comparisons=comparisons,
            **run_record(s, scored),
        )

    samples = [Sample(it.id, it.prompt, "winrate", it) for it in items]
    solver = Cached(Generate(s.max_new_tokens, seed=s.seed), answers)
    return Task("winrate", samples, solver, WinrateAnswers(), summarize)


def measure_winrate(
    targets: Sequence[Target],
    settings: WinrateSettings | None = None,
    judge: Judge | CommunityJudge | None = None,
    **options: Unpack[ProbeOptions],
) -> WinrateResult:
    """Every target answers the prompts; each planned comparison is judged per community; with ``out_dir``,
    writes ``winrate.json`` there (answers are logged to ``answers.jsonl`` and reused)."""
    s = settings or WinrateSettings()
    plan = plan_comparisons(targets, s)
    return run_probe(lambda _, log: winrate_task(s, plan, judge, log), targets, s, **options)
