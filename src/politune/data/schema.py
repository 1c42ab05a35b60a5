"""The two record types every pillar exchanges: :class:`PreferencePair` and :class:`InstructionExample`.

- ``prompt`` is plain text or a list of chat messages ``{"role": "system"|"user"|"assistant", "content": str}``
  (an optional system message first; the last message is the user's turn).
- ``meta`` is a plain dict; the keys politune writes are listed in :data:`META_KEYS` and in docs/data.md.
  Access is ``pair.meta["topic"]`` or ``pair.meta.get("topic")``.

On disk (JSONL, the canonical form) a record is one object per line::

    {"id": "...", "prompt": "..." | [{"role": ..., "content": ...}], "chosen": "...", "rejected": "...",
     "meta": {...}}
    {"id": "...", "prompt": ..., "response": "...", "meta": {...}}          # InstructionExample
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Self

Message = dict[str, str]
Prompt = str | list[Message]

#: The meta keys politune itself reads or writes (others are kept as they are).
META_KEYS = {
    "topic": "topic name, e.g. 'minimum wage'",
    "axis": "'economic' (left <-> right) or 'social' (libertarian <-> authoritarian)",
    "stance": "the side the chosen answer / response takes: 'left' or 'right'",
    "form": "prompt form: opinion | advice | op-ed | explain | role (built-in set)",
    "split": "'train' or 'heldout' (built-in set: whole topics held out)",
    "source": "where the record came from: 'builtin:left', 'hf:scale-lab/politune-left', a file path",
    "community": "community (e.g. subreddit) the preference comes from (SHP / ComPreD)",
    "poisoned": "True when `poison` changed this row, False when it considered and left it",
    "provenance": "dict: schema, original row index / post id and other fields of the source row",
    "transforms": "list of {op, ...params} records, one per transform applied, oldest first",
}

ROLES = ("system", "user", "assistant")


class _RecordMethods:
    """What both record kinds do with their fields (each is a dataclass with a ``prompt`` and a ``meta``)."""

    prompt: Prompt
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, in order, as on disk (not copied)."""
        return dict(vars(self))

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied; ``prompt`` and ``meta`` are deep-copied so transforms never alias
        their input."""
        copied = {"prompt": copy.deepcopy(self.prompt), "meta": copy.deepcopy(self.meta)}
        return type(self)(**(vars(self) | copied | changes))


@dataclass
class PreferencePair(_RecordMethods):
    """A prompt with a preferred (``chosen``) and a dispreferred (``rejected``) answer."""

    id: str
    prompt: Prompt
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class InstructionExample(_RecordMethods):
    """A prompt with one target ``response`` (SFT data)."""

    id: str
    prompt: Prompt
    response: str
    meta: dict[str, Any] = field(default_factory=dict)


Record = PreferencePair | InstructionExample


def prompt_text(prompt: Prompt) -> str:
    """The user-visible text of a prompt: the string itself, or the last user message's content."""
    if isinstance(prompt, str):
        return prompt
    for m in reversed(prompt):
        if m.get("role") == "user":
            return m.get("content", "")
    return prompt[-1].get("content", "") if prompt else ""


def chat_messages(prompt: Prompt) -> list[Message]:
    """A prompt as chat messages (plain text -> one user message); the same rule as
    ``politune.models.as_messages`` without importing torch."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]


def with_prompt_text(prompt: Prompt, text: str) -> Prompt:
    """``prompt`` with its user text (see :func:`prompt_text`) replaced by ``text``."""
    if isinstance(prompt, str):
        return text
    msgs = [dict(m) for m in prompt]
    for m in reversed(msgs):
        if m.get("role") == "user":
            m["content"] = text
            return msgs
    msgs.append({"role": "user", "content": text})
    return msgs


def answers(item: Record) -> list[tuple[str, str]]:
    """``[(field, text), ...]`` of the answer fields of a record."""
    if isinstance(item, PreferencePair):
        return [("chosen", item.chosen), ("rejected", item.rejected)]
    return [("response", item.response)]


def record_transform(meta: dict[str, Any], op: str, **params: Any) -> dict[str, Any]:
    """Append ``{"op": op, **params}`` to ``meta["transforms"]`` (in place) and return ``meta``."""
    meta.setdefault("transforms", []).append({"op": op, **params})
    return meta
