"""Row checks shared by every loader and by ``politune data validate``.

A problem is an :class:`Issue` printed as ``file:line: field: problem``. Checks:

- structure (always): missing field, wrong type (prompt = text or chat messages; answers = text), bad meta;
- content (``strict``, the default): empty text, chosen == rejected, lone surrogates (invalid UTF-8),
  duplicate id, longer than ``max_chars`` characters or ``max_tokens`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from politune.data.schema import ROLES, InstructionExample, PreferencePair, Record

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Default cap on any one text field, in characters (a guard against runaway rows; ``None`` disables it).
DEFAULT_MAX_CHARS = 100_000


@dataclass(frozen=True)
class Issue:
    loc: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.field}: {self.problem}"


def type_name(v: Any) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def _bad_utf8(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _answer(v: Any) -> Any:
    """TRL's conversational answers (``[{"role": "assistant", "content": ...}]``) become plain text."""
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) and v[0].get("role") == "assistant":
        return v[0].get("content")
    return v


def check_prompt(prompt: Any, strict: bool = True) -> str | None:
    if prompt is None:
        return "missing field"
    if isinstance(prompt, str):
        if strict and not prompt.strip():
            return "empty"
        if strict and _bad_utf8(prompt):
            return "invalid UTF-8 (lone surrogate)"
        return None
    if isinstance(prompt, list):
        if not prompt:
            return "empty list of chat messages"
        for i, m in enumerate(prompt):
            if not isinstance(m, dict) or set(m) - {"role", "content"} - {"name"}:
                return f"message {i}: expected {{'role': ..., 'content': ...}}, got {type_name(m)}"
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                return f"message {i}: role {role!r} is not one of {', '.join(ROLES)}"
            if role == "system" and i != 0:
                return f"message {i}: a system message may only come first"
            if not isinstance(content, str):
                return f"message {i}: content must be a string, got {type_name(content)}"
            if strict and not content.strip():
                return f"message {i}: empty content"
            if strict and _bad_utf8(content):
                return f"message {i}: invalid UTF-8 (lone surrogate)"
        if prompt[-1].get("role") != "user":
            return "the last chat message must be the user's turn"
        return None
    return f"expected a string or a list of chat messages, got {type_name(prompt)}"


def check_text(v: Any, strict: bool = True) -> str | None:
    if v is None:
        return "missing field"
    if not isinstance(v, str):
        return f"expected a string, got {type_name(v)}"
    if strict and not v.strip():
        return "empty"
    if strict and _bad_utf8(v):
        return "invalid UTF-8 (lone surrogate)"
    return None


def check_fields(
    d: dict[str, Any], kind: str, strict: bool = True, max_chars: int | None = DEFAULT_MAX_CHARS
) -> list[tuple[str, str]]:
    """Problems of one record given as a dict (``id, prompt, chosen, rejected | response, meta``)."""
    probs: list[tuple[str, str]] = []
    rid = d.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        probs.append(("id", "missing field" if rid is None else "empty"))
    elif not isinstance(rid, str):
        probs.append(("id", f"expected a string, got {type_name(rid)}"))
    p = check_prompt(d.get("prompt"), strict)
    if p:
        probs.append(("prompt", p))
    fields = ("chosen", "rejected") if kind == "preference" else ("response",)
    for f in fields:
        p = check_text(d.get(f), strict)
        if p:
            probs.append((f, p))
    if (
        strict
        and kind == "preference"
        and isinstance(d.get("chosen"), str)
        and isinstance(d.get("rejected"), str)
        and d["chosen"].strip()
        and d["chosen"].strip() == d["rejected"].strip()
    ):
        probs.append(("rejected", "identical to chosen"))
    meta = d.get("meta")
    if meta is not None and not isinstance(meta, dict):
        probs.append(("meta", f"expected an object, got {type_name(meta)}"))
    if strict and max_chars is not None:
        texts = [("prompt", d.get("prompt"))] + [(f, d.get(f)) for f in fields]
        for f, t in texts:
            n = (
                len(t)
                if isinstance(t, str)
                else (
                    sum(len(m.get("content") or "") for m in t if isinstance(m, dict))
                    if isinstance(t, list)
                    else 0
                )
            )
            if n > max_chars:
                probs.append((f, f"{n} characters, longer than the limit of {max_chars} (max_chars)"))
    return probs


def token_issues(
    items: list[Record], locs: list[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> list[Issue]:
    """Fields longer than ``max_tokens`` tokens for ``tokenizer`` (prompt = its text; chat = all contents)."""
    out: list[Issue] = []
    for field in ("prompt", "chosen", "rejected", "response"):
        idx, texts = [], []
        for i, it in enumerate(items):
            if field in ("chosen", "rejected") and not isinstance(it, PreferencePair):
                continue
            if field == "response" and not isinstance(it, InstructionExample):
                continue
            v = getattr(it, field)
            texts.append(v if isinstance(v, str) else "\n".join(m["content"] for m in v))
            idx.append(i)
        if not texts:
            continue
        lens = [len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        for i, n in zip(idx, lens, strict=True):
            if n > max_tokens:
                out.append(
                    Issue(locs[i], field, f"{n} tokens, longer than the limit of {max_tokens} (max_tokens)")
                )
    return out


def validate(
    items: list[Record],
    *,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_tokens: int | None = None,
    locs: list[str] | None = None,
) -> list[Issue]:
    """All problems of in-memory records (locations default to ``row N``); an empty list means valid."""
    locs = locs or [f"row {i}" for i in range(1, len(items) + 1)]
    out: list[Issue] = []
    seen: dict[str, str] = {}
    for it, loc in zip(items, locs, strict=True):
        kind = "preference" if isinstance(it, PreferencePair) else "instruction"
        out.extend(Issue(loc, f, p) for f, p in check_fields(it.to_dict(), kind, True, max_chars))
        if isinstance(it.id, str):
            if it.id in seen:
                out.append(Issue(loc, "id", f"duplicate id {it.id!r} (first at {seen[it.id]})"))
            else:
                seen[it.id] = loc
    if tokenizer is not None and max_tokens is not None:
        out.extend(token_issues(items, locs, tokenizer, max_tokens))
    return out
