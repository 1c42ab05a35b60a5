"""Implicit reward accuracy of a DPO adapter on held-out preference pairs, as a task.

DPO trains a policy whose implicit reward is ``r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))``. With the base
model as the reference (the adapter disabled on the same loaded model, no second copy), per held-out pair:

- ``reward_chosen``, ``reward_rejected``, ``margin = reward_chosen - reward_rejected``;
- ``accuracy``: the share of pairs with ``reward_chosen > reward_rejected`` (0.5 = the adapter's preference
  is no better than a coin on pairs it never saw), and the mean margin, both with 95% bootstrap CIs over pairs;
- the same per subset: every field among ``community``, ``axis``, ``topic`` that the pairs carry in ``meta``.

Log-probs: the tune pillar's ``completion_logps`` (``politune.tune.trainer``: the summed log-probs of the
answer tokens, the LM head run in fp32) on sequences tokenized as TRL's DPO trainer does (chat template; the
answer starts where ``prompt`` and ``prompt + answer`` diverge; cut to ``max_length`` from the start).

Default pairs: the built-in ideology set's held-out topics (``builtin:left`` / ``builtin:right``, split
``heldout``), the side matching the adapter's stance (from its model card or ``stances``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from politune.config import Config
from politune.errors import PolituneError
from politune.fsutil import sha256_text
from politune.measure.results_base import MeanCI, TargetInfo, ci
from politune.measure.results_compred import (
    PairReward,
    RewardAccuracyEntry,
    RewardAccuracyResult,
    RewardGroup,
)
from politune.measure.solvers import AnswerLog, Cached
from politune.measure.stats import bootstrap_ci
from politune.measure.targets import Target, target_stance
from politune.measure.task import Context, Sample, Scored, Task, run_probe, run_record
from politune.measure.winrate import take_in_turn

if TYPE_CHECKING:
    from politune.data.schema import PreferencePair
    from politune.models.loading import CausalLM, Tokenizer

GROUP_FIELDS = ("community", "axis", "topic")
REFERENCE = "the base model (the adapter disabled on the same loaded model)"
NOTES = {
    "reward": "r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)): the adapter's summed answer log-prob minus the "
    "base model's, times the DPO beta the adapter was trained with.",
    "accuracy": "Share of held-out pairs whose chosen answer gets the higher implicit reward; 0.5 is chance. It "
    "says the adapter learned a preference that carries over to pairs it never saw; not how its free answers "
    "lean (the compass and topic measures) or whether a reader would prefer them (winrate).",
    "margin": "Mean reward_chosen - reward_rejected (in the reward's units, which scale with beta).",
    "reference": "The reference is the base model. For an adapter trained by SFT then DPO, whose DPO reference "
    "was the SFT adapter, this reward includes what SFT learned.",
    "ci": "95% bootstrap CIs resample pairs.",
}


class RewardOptions(Config):
    """Options of ``politune measure reward-accuracy`` (CLI flags of the same names; a study's
    ``measure.reward_accuracy.options``)."""

    pairs_file: str | None = None  # preference pairs; None: builtin:left|right by each adapter's stance
    split: str | None = "heldout"  # of the built-in set (train / heldout; None: all)
    limit: int | None = Field(None, ge=1)  # at most N pairs, taken in turn from each topic: a cheap subset
    stances: dict[str, str] = {}  # adapter name -> stance, where its model card does not say
    beta: float | None = Field(None, gt=0)  # default: the beta in each adapter's model card
    max_length: int = Field(512, ge=8)  # tokens of prompt + answer (cut from the end)
    batch_size: int = Field(4, ge=1)
    device: str = "auto"
    # fp32 by default: the reward is a small difference of two summed log-probs, which bf16 rounding blurs
    dtype: str = "float32"


class RewardSettings(RewardOptions):
    seed: int = 0


@dataclass(frozen=True)
class AdapterPlan:
    """How one adapter's pairs are read: its stance, beta, and whether the default pairs are mirrored (right)."""

    stance: str | None
    beta: float
    mirrored: bool
    source: str


def load_reward_pairs(s: RewardOptions) -> tuple[list[Any], str]:
    """The pairs (``builtin:left`` with the split when no file is given) and their source name."""
    from politune.data import load

    if s.pairs_file is None:
        spec = "builtin:left"
        pairs = load(spec, split=s.split)
        source = f"{spec}:{s.split}" if s.split else spec
    else:
        pairs, source = load(s.pairs_file), s.pairs_file
    pairs = take_in_turn(pairs, lambda p: str(p.meta.get("topic") or p.meta.get("community") or ""), s.limit)
    if not pairs:
        raise PolituneError(f"{source}: no preference pairs")
    return pairs, source


def plan_adapters(targets: Sequence[Target], s: RewardOptions, source: str) -> dict[str, AdapterPlan]:
    """Per target: stance, beta and pair orientation; raises (before any model loads) for a target without an
    adapter, an unknown beta, or a default pair set without a left / right stance."""
    from politune.tune.card import read_adapter_facts

    plans = {}
    for t in targets:
        if not t.adapter:
            raise PolituneError(f"target {t.name}: reward accuracy needs a LoRA adapter (NAME=DIR)")
        facts = read_adapter_facts(t.adapter)
        stance = target_stance(t, s.stances)
        beta = s.beta if s.beta is not None else facts.beta
        if beta is None:
            raise PolituneError(
                f"adapter {t.name}: its DPO beta is not recorded (no model card): pass --beta"
            )
        mirrored = False
        if s.pairs_file is None:
            if stance not in ("left", "right"):
                raise PolituneError(
                    f"adapter {t.name}: stance {stance!r} unknown or not left / right, so the built-in pairs "
                    "cannot be oriented: pass --stance NAME=left|right or --pairs FILE"
                )
            mirrored = stance == "right"
            src = source.replace("builtin:left", f"builtin:{stance}")
        else:
            src = source
        plans[t.name] = AdapterPlan(stance, float(beta), mirrored, src)
    return plans


# ------------------------------------------------------------------------------------------------ log-probs


def _chat_ids(tokenizer: Tokenizer, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer: Tokenizer, row: dict[str, Any], max_length: int) -> list[tuple[list[int], int]]:
    """``[(ids, answer start)]`` for the chosen and the rejected answer of a TRL conversational row: the answer
    starts where the tokenized prompt and prompt + answer diverge (as TRL's DPO trainer), cut to ``max_length``."""
    prompt = _chat_ids(tokenizer, row["prompt"], True)
    full = [_chat_ids(tokenizer, row["prompt"] + row[k], False) for k in ("chosen", "rejected")]
    start = min(_common_prefix(prompt, f) for f in full)
    if start >= max_length:
        raise PolituneError(
            f"a prompt is {start} tokens: no room for its answer within max_length {max_length}"
        )
    return [(f[:max_length], start) for f in full]


def pair_logps(
    model: CausalLM, tokenizer: Tokenizer, rows: Sequence[dict[str, Any]], max_length: int
) -> list[list[float]]:
    """Per row ``[policy chosen, policy rejected, reference chosen, reference rejected]`` summed answer
    log-probs; the reference is ``model`` with its adapter disabled."""
    import torch

    from politune.tune.trainer import completion_logps

    seqs = [s for r in rows for s in tokenize_pair(tokenizer, r, max_length)]
    width = max(len(ids) for ids, _ in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    am = torch.zeros_like(ids)
    cm = torch.zeros_like(ids)
    for i, (x, start) in enumerate(seqs):
        ids[i, : len(x)] = torch.tensor(x)
        am[i, : len(x)] = 1
        cm[i, start : len(x)] = 1
    ids, am, cm = ids.to(dev), am.to(dev), cm.to(dev)
    with torch.inference_mode():
        policy = completion_logps(model, ids, am, cm)[0].sum(dim=1)
        with model.disable_adapter():
            ref = completion_logps(model, ids, am, cm)[0].sum(dim=1)
    p, r = policy.tolist(), ref.tolist()
    return [[p[2 * k], p[2 * k + 1], r[2 * k], r[2 * k + 1]] for k in range(len(rows))]


@dataclass(frozen=True)
class PairLogps:
    """The solver: summed answer log-probs of each pair's two answers, adapter on and off (a local model)."""

    max_length: int = 512

    @property
    def name(self) -> str:
        return f"pair-logps(max_length={self.max_length})"

    def solve(self, ctx: Context, samples: Sequence[Sample]) -> list[list[float]]:
        from politune.measure.compass.backends import LocalBackend

        backend = ctx.backend
        if not isinstance(backend, LocalBackend) or not hasattr(backend.model, "disable_adapter"):
            raise PolituneError(
                f"target {ctx.target.name}: reward accuracy needs a local model with a LoRA adapter"
            )
        from politune.tune.data import preference_data

        rows = preference_data([s.data for s in samples], ctx.target.system, split=None).rows
        out = pair_logps(backend.model, backend.tokenizer, rows, self.max_length)
        ctx.progress(len(samples))
        return out


# ------------------------------------------------------------------------------------------------ scorer


def _mean_ci(values: Sequence[float], seed: int) -> MeanCI:
    return MeanCI(
        mean=sum(values) / len(values) if values else None,
        ci=ci(bootstrap_ci(values, seed=seed)),
        n=len(values),
    )


def _group(rows: Sequence[PairReward], seed: int) -> RewardGroup:
    done = [r for r in rows if r.margin is not None]
    return RewardGroup(
        accuracy=_mean_ci([float(r.margin > 0) for r in done], seed),  # type: ignore[operator]
        margin=_mean_ci([float(r.margin) for r in done], seed),  # type: ignore[arg-type]
    )


def pair_reward(sample: Sample, logps: Sequence[float], beta: float, mirrored: bool) -> PairReward:
    """One pair's rewards from its four log-probs (``mirrored``: the pair's rejected answer is the chosen one)."""
    pc, pr, rc, rr = logps
    if mirrored:
        pc, pr, rc, rr = pr, pc, rr, rc
    meta = getattr(sample.data, "meta", {}) or {}
    groups = {f: str(meta[f]) for f in GROUP_FIELDS if isinstance(meta.get(f), str) and meta[f]}
    c, r = beta * (pc - rc), beta * (pr - rr)
    return PairReward(
        id=str(getattr(sample.data, "id", sample.id)),
        groups=groups,
        logp_chosen=pc,
        logp_rejected=pr,
        ref_logp_chosen=rc,
        ref_logp_rejected=rr,
        reward_chosen=c,
        reward_rejected=r,
        margin=c - r,
    )


@dataclass
class RewardScore:
    plans: dict[str, AdapterPlan]
    seed: int = 0
    name: str = "implicit-reward"

    def score(self, target: Target, samples: Sequence[Sample], outputs: Sequence[Any]) -> RewardAccuracyEntry:
        plan = self.plans[target.name]
        rows = [pair_reward(s, o, plan.beta, plan.mirrored) for s, o in zip(samples, outputs, strict=True)]
        by: dict[str, dict[str, RewardGroup]] = {}
        for f in GROUP_FIELDS:
            values = sorted({r.groups[f] for r in rows if f in r.groups})
            if values:
                by[f] = {v: _group([r for r in rows if r.groups.get(f) == v], self.seed) for v in values}
        whole = _group(rows, self.seed)
        return RewardAccuracyEntry(
            target=TargetInfo.of(target),
            accuracy=whole.accuracy,
            margin=whole.margin,
            pairs_source=plan.source,
            stance=plan.stance,
            beta=plan.beta,
            by=by,
            pairs=rows,
        )


def _pair_sample(pair: PreferencePair) -> Sample:
    """A pair as a sample whose id carries a hash of its text, so a logged log-prob is never reused for a pair
    whose text changed."""
    text = json.dumps([pair.prompt, pair.chosen, pair.rejected], ensure_ascii=False)
    return Sample(f"{pair.id}:{sha256_text(text)[:8]}", str(pair.id), "pair", pair)


def reward_task(
    settings: RewardSettings, targets: Sequence[Target], log_path: str | Path | None = None
) -> Task[RewardAccuracyEntry, RewardAccuracyResult]:
    """The reward-accuracy task (pairs load and every adapter is planned now: bad input fails before any model)."""
    s = settings
    pairs, source = load_reward_pairs(s)
    scorer = RewardScore(plan_adapters(targets, s, source), s.seed)
    log = AnswerLog(Path(log_path) if log_path is not None else None)

    def summarize(scored: list[Scored[RewardAccuracyEntry]]) -> RewardAccuracyResult:
        return RewardAccuracyResult(
            reference=REFERENCE, notes=NOTES, models=[x.entry for x in scored], **run_record(s, scored)
        )

    samples = [_pair_sample(p) for p in pairs]
    if len({x.id for x in samples}) != len(samples):
        raise PolituneError(f"{source}: id: expected unique pair ids")
    return Task("reward_accuracy", samples, Cached(PairLogps(s.max_length), log), scorer, summarize)


def measure_reward_accuracy(
    targets: Sequence[Target],
    settings: RewardSettings | None = None,
    out_dir: str | Path | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> RewardAccuracyResult:
    """Each adapter's implicit reward accuracy on held-out pairs; with ``out_dir``, writes
    ``reward_accuracy.json`` there (log-probs are logged to ``answers.jsonl`` and reused)."""
    s = settings or RewardSettings()
    return run_probe(
        lambda _, log: reward_task(s, targets, log), targets, s, out_dir=out_dir, on_progress=on_progress
    )
