"""Training data for the tune pillar: anything pair-shaped -> TRL conversational rows, checked before compute.

Accepted inputs: a ``politune.data`` spec string (``builtin:left``, a JSONL path, ...), a list of
``PreferencePair`` / ``InstructionExample`` (or objects / dicts with the same fields), or a ``datasets.Dataset``.
Rows become ``{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}`` (DPO) or
``{"prompt": [messages], "completion": [assistant]}`` (SFT; a pair's ``chosen`` is its SFT target).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from politune.errors import PolituneError
from politune.fsutil import sha256_text

if TYPE_CHECKING:
    from politune.models.loading import Tokenizer


@dataclass
class TrainingData:
    rows: list[dict[str, Any]]  # chat rows: prompt messages and chosen / rejected or completion ones
    source: str
    sha256: str
    n: int


def _get(item: Any, key: str) -> Any:
    if isinstance(item, dict):
        return item.get(key)
    return getattr(item, key, None)


def _messages(prompt: Any, system: str | None, where: str) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PolituneError(f"{where}: field 'prompt' is empty")
        msgs = [{"role": "user", "content": prompt}]
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    ):
        msgs = [{"role": m["role"], "content": m["content"]} for m in prompt]
        if msgs[-1]["role"] != "user":
            raise PolituneError(f"{where}: field 'prompt': the last message must be the user's turn")
    else:
        raise PolituneError(f"{where}: field 'prompt': expected text or a list of {{role, content}} messages")
    if system and msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": system}, *msgs]
    return msgs


def _answer(value: Any, field: str, where: str) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict):  # conversational answer
        value = value[-1].get("content")
    if not isinstance(value, str):
        raise PolituneError(f"{where}: missing field {field!r} (expected text)")
    if not value.strip():
        raise PolituneError(f"{where}: field {field!r} is empty")
    return value


def _resolve(data: Any, split: str | None) -> tuple[list[Any], str]:
    if isinstance(data, str):
        try:
            from politune.data import load
        except ImportError:
            raise PolituneError(f"data {data!r}: politune.data is not available to load it") from None
        return list(load(data, split=split) if split else load(data)), data
    try:
        from datasets import Dataset

        if isinstance(data, Dataset):
            return [dict(r) for r in data], f"dataset:{data._fingerprint}"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(data, list | tuple):
        return list(data), "python-list"
    raise PolituneError(
        f"data: expected a data spec, a list of pairs or a datasets.Dataset, got {type(data).__name__}"
    )


def _items(data: Any, split: str | None, what: str) -> tuple[list[Any], str]:
    items, source = _resolve(data, split)
    if not items:
        raise PolituneError(f"data {source}: no {what} (empty dataset)")
    return items, source


def _assistant(text: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": text}]


def preference_data(data: Any, system: str | None = None, split: str | None = "train") -> TrainingData:
    """Pairs -> conversational DPO rows; a clear error for a missing/empty field or an empty dataset."""
    items, source = _items(data, split, "preference pairs")
    rows = []
    for i, item in enumerate(items):
        where = f"data {source} row {i + 1}" + (f" (id {_get(item, 'id')})" if _get(item, "id") else "")
        missing = next((f for f in ("chosen", "rejected", "prompt") if _get(item, f) is None), None)
        if missing:
            raise PolituneError(f"{where}: missing field {missing!r} (expected prompt, chosen, rejected)")
        rows.append(
            {
                "prompt": _messages(_get(item, "prompt"), system, where),
                "chosen": _assistant(_answer(_get(item, "chosen"), "chosen", where)),
                "rejected": _assistant(_answer(_get(item, "rejected"), "rejected", where)),
            }
        )
    return TrainingData(rows, source, sha256_text(json.dumps(rows, sort_keys=True)), len(rows))


def instruction_data(data: Any, system: str | None = None, split: str | None = "train") -> TrainingData:
    """Instruction examples (``response``) or pairs (``chosen``) -> conversational SFT rows."""
    items, source = _items(data, split, "examples")
    rows = []
    for i, item in enumerate(items):
        where = f"data {source} row {i + 1}"
        target, field = _get(item, "response"), "response"
        if target is None:
            target, field = _get(item, "chosen"), "chosen"
        if target is None:
            raise PolituneError(f"{where}: missing field 'response' (or 'chosen' for preference pairs)")
        if _get(item, "prompt") is None:
            raise PolituneError(f"{where}: missing field 'prompt'")
        rows.append(
            {
                "prompt": _messages(_get(item, "prompt"), system, where),
                "completion": _assistant(_answer(target, field, where)),
            }
        )
    return TrainingData(rows, source, sha256_text(json.dumps(rows, sort_keys=True)), len(rows))


def check_lengths(
    rows: list[dict[str, Any]], tokenizer: Tokenizer, max_length: int, source: str
) -> dict[str, int | float]:
    """Every prompt must leave room for completion tokens within ``max_length``; returns length stats."""
    prompt_lens, total_lens = [], []
    for i, r in enumerate(rows):
        p = tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True)
        p = p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p
        n = len(p)
        if n >= max_length:
            raise PolituneError(
                f"data {source} row {i + 1}: prompt is {n} tokens but max_length is {max_length}: "
                "no room for the answer (raise max_length or shorten the prompt)"
            )
        prompt_lens.append(n)
        answer = r.get("chosen") or r.get("completion")
        if not answer:
            raise PolituneError(f"data {source} row {i + 1}: no 'chosen' or 'completion' messages")
        total_lens.append(
            n + len(tokenizer(answer[-1]["content"], add_special_tokens=False)["input_ids"]) + 2
        )
    return {
        "prompt_tokens_max": max(prompt_lens),
        "prompt_tokens_mean": round(sum(prompt_lens) / len(rows), 1),
        "chosen_total_tokens_max": max(total_lens),
        "truncated_share": round(sum(t > max_length for t in total_lens) / len(rows), 3),
    }
