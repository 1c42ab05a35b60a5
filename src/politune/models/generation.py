"""Chat formatting and batched generation for a local transformers model.

One place for the things every pillar does with a local model: turn a prompt (plain text or chat messages)
into the model's chat format, and generate answers for many prompts in left-padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer

Message = dict[str, str]
Prompt = str | Sequence[Message]


def as_messages(prompt: Prompt, system: str | None = None) -> list[Message]:
    """Plain text becomes one user message; ``system`` is prepended unless the messages carry one."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system is not None and not (msgs and msgs[0].get("role") == "system"):
        msgs = [{"role": "system", "content": system}, *msgs]
    return msgs


def shared_start(seqs: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all of ``seqs`` share (a lone sequence: its length; none: 0). What a shared KV
    cache prefix can cover: the compass's prompts (``measure.compass.kvcache``), a serve prefill group."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def format_chat(
    tokenizer: Tokenizer,
    prompt: Prompt,
    system: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The exact text the model sees for ``prompt`` (its chat template, or a plain fallback)."""
    msgs = as_messages(prompt, system)
    if getattr(tokenizer, "chat_template", None):
        # Tokenizer is untyped (transformers); with tokenize=False the template gives the text
        text: str = tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return text
    text = "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
    return text + ("\nassistant:" if add_generation_prompt else "")


@torch.inference_mode()
def generate(
    model: CausalLM,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    *,
    system: str | None = None,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
) -> list[str]:
    """Answer each prompt; greedy when ``temperature == 0``. Deterministic for a seed. Returns plain strings."""
    texts = [format_chat(tokenizer, p, system) for p in prompts]
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id)
            if temperature > 0:
                torch.manual_seed(seed + start)
                kwargs.update(do_sample=True, temperature=temperature)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            gen = model.generate(**enc, **kwargs)
            for row in gen[:, enc["input_ids"].shape[1] :]:
                out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = old_side
    return out
