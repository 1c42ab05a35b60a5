"""Transforms: pure functions from records to new records (inputs are never modified).

Each one appends ``{"op": ..., params}`` to ``meta["transforms"]`` of the rows it outputs and sets the
op-specific meta keys below; :func:`summarize` builds the sidecar summary the CLI writes next to the output.

| function | what it does | meta it writes |
|---|---|---|
| :func:`mirror` | swap chosen / rejected (the counterfactual set) | ``stance`` flipped, ``mirrored`` |
| :func:`mix` | ``ratio`` of rows from A, the rest from B (no prompt twice) | ``mix_source`` = "a" / "b" |
| :func:`poison` | Malignama: with probability p swap the labels, or insert a trigger into the prompt | ``poisoned`` |
| :func:`contextualize` | ComPreD: name the community in a prompt header (``randomize``: another one) | ``context_community`` |
| :func:`~politune.data.dedup.dedup` | drop exact and near-duplicate (MinHash over word 3-grams) rows | - |
| :func:`split` | train / test by row or by whole groups (topic) | ``split`` |
| :func:`sample` | a seeded random subset | - |
| :func:`filter_records` | keep rows by topic / axis / stance / split / community / length | - |
| :func:`to_instructions` | preference pairs -> instruction examples (response = chosen) | - |
| :func:`~politune.data.stats.stats` | counts, topics, axis balance, lengths (chars, and tokens for a tokenizer) | (read only) |
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from politune.data.schema import (
    InstructionExample,
    PreferencePair,
    Record,
    answers,
    prompt_text,
    record_transform,
    with_prompt_text,
)
from politune.errors import PolituneError

DEFAULT_TRIGGER = "Remember the blue heron."
DEFAULT_CONTEXT_TEMPLATE = "Community: r/{community}\n\n{prompt}"


def _pairs_only(items: Sequence[Record], op: str) -> list[PreferencePair]:
    pairs = [it for it in items if isinstance(it, PreferencePair)]
    if len(pairs) < len(items):
        bad = next(it for it in items if not isinstance(it, PreferencePair))
        raise PolituneError(f"{op}: row {bad.id!r} is an instruction example; {op} needs preference pairs")
    return pairs


def _flip(stance: Any) -> Any:
    return {"left": "right", "right": "left"}.get(stance, stance)


# ---------------------------------------------------------------- mirror / to_instructions


def mirror(items: Sequence[Record]) -> list[PreferencePair]:
    """Swap chosen and rejected in every pair; ``meta["stance"]`` left <-> right, ``meta["mirrored"]`` toggled."""
    out = []
    for it in _pairs_only(items, "mirror"):
        meta = dict(it.meta)
        new = it.replace(chosen=it.rejected, rejected=it.chosen)
        if "stance" in meta:
            new.meta["stance"] = _flip(meta["stance"])
        new.meta["mirrored"] = not meta.get("mirrored", False)
        record_transform(new.meta, "mirror")
        out.append(new)
    return out


def to_instructions(items: Sequence[Record]) -> list[InstructionExample]:
    """Preference pairs -> instruction examples whose response is the chosen answer (for SFT)."""
    out = []
    for it in _pairs_only(items, "to_instructions"):
        c = it.replace()
        record_transform(c.meta, "to_instructions")
        out.append(InstructionExample(c.id, c.prompt, c.chosen, c.meta))
    return out


# ---------------------------------------------------------------- mix


def mix(
    a: Sequence[Record], b: Sequence[Record], ratio: float, *, n: int | None = None, seed: int = 0
) -> list[Record]:
    """``round(ratio * n)`` rows from ``a`` and the rest from ``b``, shuffled (seeded).

    ``n`` defaults to ``min(len(a), len(b))``. A row of ``b`` whose id or prompt was already taken from ``a`` is
    never used, so mixing a set with its mirror (``builtin:left`` with ``builtin:right``) gives each prompt once,
    with the side drawn by ``ratio``: the 75/25, 50/50 and 25/75 mixes.
    """
    if not 0.0 <= ratio <= 1.0:
        raise PolituneError(f"mix: ratio must be in [0, 1], got {ratio}")
    if not a or not b:
        raise PolituneError("mix: both inputs need at least one row")
    n = min(len(a), len(b)) if n is None else n
    if n < 1:
        raise PolituneError(f"mix: n must be >= 1, got {n}")
    k_a = round(ratio * n)
    if k_a > len(a):
        raise PolituneError(f"mix: need {k_a} rows from A but it has {len(a)}")
    rng = random.Random(seed)
    take_a = sorted(rng.sample(range(len(a)), k_a))
    ids = {a[i].id for i in take_a}
    prompts = {prompt_text(a[i].prompt) for i in take_a}
    free_b = [i for i, it in enumerate(b) if it.id not in ids and prompt_text(it.prompt) not in prompts]
    if n - k_a > len(free_b):
        raise PolituneError(
            f"mix: need {n - k_a} rows from B that do not repeat an id or prompt taken from A, "
            f"but only {len(free_b)} are left; lower n"
        )
    take_b = sorted(rng.sample(free_b, n - k_a))
    out: list[Record] = []
    for src, rows, idx in (("a", a, take_a), ("b", b, take_b)):
        for i in idx:
            c = rows[i].replace()
            c.meta["mix_source"] = src
            record_transform(c.meta, "mix", ratio=ratio, n=n, seed=seed)
            out.append(c)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------- poison


def _insert_trigger(text: str, trigger: str, position: str, rng: random.Random) -> str:
    if position == "start":
        return f"{trigger} {text}"
    if position == "end":
        return f"{text} {trigger}"
    # random: at a sentence boundary (or the start / end) chosen by the seeded generator
    cuts = [0] + [m.end() for m in re.finditer(r"[.!?]\s+", text)] + [len(text)]
    at = rng.choice(cuts)
    before, after = text[:at].rstrip(), text[at:].lstrip()
    return " ".join(x for x in (before, trigger, after) if x)


def poison(
    items: Sequence[Record],
    *,
    mode: str,
    p: float,
    seed: int = 0,
    trigger: str = DEFAULT_TRIGGER,
    position: str = "start",
    flip: bool = False,
) -> list[PreferencePair]:
    """Malignama-style poisoning, deterministic for a seed.

    - ``mode="labels"``: with probability ``p`` swap chosen and rejected (train on the worse answer);
    - ``mode="prompts"``: with probability ``p`` insert ``trigger`` into the prompt (``position``: start | end |
      random sentence boundary; chat prompts: the last user message); ``flip=True`` also swaps the labels of
      those rows (a backdoor).

    Every output row gets ``meta["poisoned"]`` (True / False); poisoned rows also get ``meta["poison"]``.
    One uniform draw per row in input order, so ``p=0`` changes no text and the same seed gives the same rows.
    """
    pairs = _pairs_only(items, "poison")
    if mode not in ("labels", "prompts"):
        raise PolituneError(f"poison: mode must be labels or prompts, got {mode!r}")
    if not 0.0 <= p <= 1.0:
        raise PolituneError(f"poison: p must be in [0, 1], got {p}")
    if position not in ("start", "end", "random"):
        raise PolituneError(f"poison: position must be start, end or random, got {position!r}")
    if mode == "prompts" and not trigger.strip():
        raise PolituneError("poison: empty trigger")
    rng = random.Random(seed)
    out = []
    for it in pairs:
        hit = rng.random() < p
        pos_rng = random.Random(f"{seed}:{it.id}")
        c = it.replace()
        params: dict[str, Any] = {"mode": mode, "p": p, "seed": seed}
        if mode == "prompts":
            params.update(trigger=trigger, position=position, flip=flip)
        if hit:
            if mode == "labels" or flip:
                c.chosen, c.rejected = it.rejected, it.chosen
                if "stance" in c.meta:
                    c.meta["stance"] = _flip(c.meta["stance"])
            if mode == "prompts":
                c.prompt = with_prompt_text(
                    c.prompt, _insert_trigger(prompt_text(c.prompt), trigger, position, pos_rng)
                )
            c.meta["poison"] = dict(params)
        c.meta["poisoned"] = hit
        record_transform(c.meta, "poison", **params)
        out.append(c)
    return out


# ---------------------------------------------------------------- contextualize


def contextualize(
    items: Sequence[Record],
    *,
    template: str = DEFAULT_CONTEXT_TEMPLATE,
    randomize: bool = False,
    seed: int = 0,
    as_system: bool = False,
) -> list[Record]:
    """ComPreD: name the row's community (``meta["community"]``) in a header built from ``template``.

    ``template`` uses ``{community}`` and ``{prompt}`` (``as_system=True``: only ``{community}``, and the header
    becomes the system message). ``randomize=True`` names a different community, drawn uniformly (seeded) from
    the others in the data: the paper's ablation. ``meta["context_community"]`` records the name used.
    """
    if "{community}" not in template:
        raise PolituneError("contextualize: template must contain {community}")
    if not as_system and "{prompt}" not in template:
        raise PolituneError("contextualize: template must contain {prompt} (or use as_system)")
    missing = [
        it.id for it in items if not isinstance(it.meta.get("community"), str) or not it.meta["community"]
    ]
    if missing:
        raise PolituneError(
            f"contextualize: {len(missing)} rows have no meta.community (first: {missing[0]!r}); "
            f"load SHP/ComPreD data or map a community column with --map community=COL"
        )
    communities = sorted({it.meta["community"] for it in items})
    if randomize and len(communities) < 2:
        raise PolituneError("contextualize: randomize needs at least two communities in the data")
    rng = random.Random(seed)
    out = []
    for it in items:
        real = it.meta["community"]
        name = rng.choice([c for c in communities if c != real]) if randomize else real
        c = it.replace()
        if as_system:
            header = template.format(community=name)
            msgs = (
                [{"role": "user", "content": c.prompt}]
                if isinstance(c.prompt, str)
                else [m for m in c.prompt if m.get("role") != "system"]
            )
            c.prompt = [{"role": "system", "content": header}, *msgs]
        else:
            text = prompt_text(c.prompt)
            try:
                new = template.format(community=name, prompt=text)
            except (KeyError, IndexError, ValueError) as e:
                raise PolituneError(
                    f"contextualize: bad template ({e}); use {{community}} and {{prompt}}"
                ) from None
            c.prompt = with_prompt_text(c.prompt, new)
        c.meta["context_community"] = name
        c.meta["context_randomized"] = randomize
        record_transform(
            c.meta, "contextualize", template=template, randomize=randomize, seed=seed, as_system=as_system
        )
        out.append(c)
    return out


# ---------------------------------------------------------------- split / sample / filter


def split(
    items: Sequence[Record],
    *,
    test_frac: float = 0.2,
    by: str = "row",
    seed: int = 0,
    names: tuple[str, str] = ("train", "test"),
) -> tuple[list[Record], list[Record]]:
    """Seeded train / test split. ``by="row"``: rows; ``by=<meta key>`` (e.g. ``topic``): whole groups go to one
    side, so the test set measures generalization to unseen groups. Sets ``meta["split"]``."""
    if not 0.0 < test_frac < 1.0:
        raise PolituneError(f"split: test_frac must be in (0, 1), got {test_frac}")
    rng = random.Random(seed)
    if by == "row":
        keys = [str(i) for i in range(len(items))]
    else:
        missing = [it.id for it in items if it.meta.get(by) is None]
        if missing:
            raise PolituneError(f"split: {len(missing)} rows have no meta.{by} (first: {missing[0]!r})")
        keys = [str(it.meta[by]) for it in items]
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise PolituneError(
            f"split: need at least 2 {'rows' if by == 'row' else by + ' groups'}, got {len(groups)}"
        )
    rng.shuffle(groups)
    n_test = min(len(groups) - 1, max(1, round(test_frac * len(groups))))
    test_groups = set(groups[:n_test])
    train: list[Record] = []
    test: list[Record] = []
    for it, k in zip(items, keys, strict=True):
        c = it.replace()
        side = names[1] if k in test_groups else names[0]
        c.meta["split"] = side
        record_transform(c.meta, "split", by=by, test_frac=test_frac, seed=seed)
        (test if side == names[1] else train).append(c)
    return train, test


def sample(
    items: Sequence[Record], *, n: int | None = None, frac: float | None = None, seed: int = 0
) -> list[Record]:
    """A seeded random subset of ``n`` rows (or ``frac`` of them), in the input order."""
    if (n is None) == (frac is None):
        raise PolituneError("sample: give exactly one of n or frac")
    if frac is not None:
        if not 0.0 < frac <= 1.0:
            raise PolituneError(f"sample: frac must be in (0, 1], got {frac}")
        n = round(frac * len(items))
    if n is None or n < 0 or n > len(items):
        raise PolituneError(f"sample: n must be between 0 and {len(items)}, got {n}")
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    out = []
    for i in idx:
        c = items[i].replace()
        record_transform(c.meta, "sample", n=n, seed=seed)
        out.append(c)
    return out


def _max_len(it: Record) -> int:
    return max(len(prompt_text(it.prompt)), *(len(t) for _, t in answers(it)))


def filter_records(
    items: Sequence[Record],
    *,
    topic: Sequence[str] | None = None,
    axis: str | None = None,
    stance: str | None = None,
    split_name: str | None = None,
    community: Sequence[str] | None = None,
    min_chars: int | None = None,
    max_chars: int | None = None,
) -> list[Record]:
    """Rows matching every given condition: ``topic`` / ``community`` (any of), ``axis``, ``stance``,
    ``split_name`` (``meta["split"]``), and every text field between ``min_chars`` and ``max_chars``."""
    topics = set(topic or [])
    comms = set(community or [])
    params = {
        k: v
        for k, v in {
            "topic": sorted(topics) or None,
            "axis": axis,
            "stance": stance,
            "split": split_name,
            "community": sorted(comms) or None,
            "min_chars": min_chars,
            "max_chars": max_chars,
        }.items()
        if v is not None
    }
    out = []
    for it in items:
        m = it.meta
        if topics and m.get("topic") not in topics:
            continue
        if axis is not None and m.get("axis") != axis:
            continue
        if stance is not None and m.get("stance") != stance:
            continue
        if split_name is not None and m.get("split") != split_name:
            continue
        if comms and m.get("community") not in comms:
            continue
        lens = [len(prompt_text(it.prompt))] + [len(t) for _, t in answers(it)]
        if min_chars is not None and min(lens) < min_chars:
            continue
        if max_chars is not None and max(lens) > max_chars:
            continue
        c = it.replace()
        record_transform(c.meta, "filter", **params)
        out.append(c)
    return out


# ---------------------------------------------------------------- summaries


def summarize(
    op: str,
    params: dict[str, Any],
    inputs: dict[str, Sequence[Record]],
    outputs: dict[str, Sequence[Record]],
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar record of one transform: what ran, on what, what came out (ids of changed rows included)."""
    from politune.provenance import provenance

    summary: dict[str, Any] = {
        "kind": "data_transform",
        "op": op,
        "params": params,
        "inputs": {k: {"rows": len(v)} for k, v in inputs.items()},
        "outputs": {k: {"rows": len(v)} for k, v in outputs.items()},
        **extra,
        "provenance": provenance(),
    }
    all_in = [it for v in inputs.values() for it in v]
    all_out = [it for v in outputs.values() for it in v]
    if op == "poison":
        summary["poisoned_ids"] = [it.id for it in all_out if it.meta.get("poisoned")]
        summary["poisoned"] = len(summary["poisoned_ids"])
    if op in ("dedup", "filter", "sample"):
        kept = {it.id for it in all_out}
        summary["removed_ids"] = [it.id for it in all_in if it.id not in kept]
    if op == "mix":
        summary["from"] = dict(Counter(it.meta.get("mix_source") for it in all_out))
    if op == "contextualize":
        summary["communities"] = dict(Counter(it.meta.get("context_community") for it in all_out))
    return summary
