"""The frozen bottom of a LoRA policy, run once per DPO batch.

With LoRA on the top layers only (``lora.layers``), the decoder layers below the lowest adapted layer are the
same for the policy and its reference and get no gradient. :func:`shared_prefix` runs them once per batch, with
no grad, and both forwards start from its hidden states. It also runs each **prompt** once: the collator lays
a batch out as ``[prompt_i + chosen_i ; prompt_i + rejected_i]``, so every prompt appears twice; the prompts go
through the frozen layers alone and fill a KV cache that the chosen and the rejected completions then both
attend to. Causal attention makes this exact: a prompt position never sees the completion after it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, cast

import torch
from transformers import DynamicCache

from politune.models.loading import CausalLM


def decoder_of(model: CausalLM) -> Any:
    """The decoder stack (the module with ``.layers``) inside a (PEFT-wrapped) causal LM, or None."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    dec = getattr(m, getattr(m, "base_model_prefix", "model"), None)
    return dec if dec is not None and isinstance(getattr(dec, "layers", None), torch.nn.ModuleList) else None


def first_adapted_layer(model: CausalLM) -> int:
    """Index of the lowest decoder layer that holds a LoRA weight (0 if unknown or none)."""
    found = [
        int(m.group(1))
        for name, _ in model.named_parameters()
        if "lora_" in name and (m := re.search(r"\.layers\.(\d+)\.", name))
    ]
    return min(found) if found else 0


@contextlib.contextmanager
def only_layers(decoder: Any, sl: slice) -> Iterator[None]:
    """Temporarily run ``decoder`` with a slice of its layers (the others are skipped, not changed)."""
    full = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(full)[sl])
    try:
        yield
    finally:
        decoder.layers = full


def _hidden_after(decoder: Any, k: int, **inputs: Any) -> torch.Tensor:
    """Hidden states after decoder layer ``k - 1`` (before the final norm), no grad; ``inputs`` go to the decoder
    (a ``cache`` in them is filled for those ``k`` layers)."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = decoder.layers[k - 1].register_forward_hook(hook)
    try:
        with torch.no_grad(), only_layers(decoder, slice(0, k)):
            decoder(**inputs)
    finally:
        handle.remove()
    return captured["h"]


def prompt_lengths(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor | None:
    """Per pair, the length of the prompt shared by its chosen row ``i`` and rejected row ``B + i``; None when the
    batch is not laid out that way (odd rows, a prompt truncated away, or the two rows' prompts differ)."""
    n = input_ids.size(0)
    if n % 2 or n == 0:
        return None
    has = completion_mask.bool().any(dim=1)
    if not bool(has.all()):
        return None
    starts = completion_mask.int().argmax(dim=1)  # first completion position of every row
    b = n // 2
    if not torch.equal(starts[:b], starts[b:]):
        return None
    in_prompt = torch.arange(input_ids.size(1), device=input_ids.device) < starts[:b, None]
    if bool(((input_ids[:b] != input_ids[b:]) & in_prompt).any()):
        return None
    return starts[:b]


def shared_prefix(
    decoder: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    k: int,
    completion_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden states after the first ``k`` decoder layers (no grad), for every row and position.

    With ``completion_mask`` and a batch of ``[chosen rows ; rejected rows]`` over the same prompts (right-padded,
    as TRL's DPO collator makes it), each prompt is run once and its KV cache shared by its two completions;
    otherwise every row is run whole.
    """
    lengths = None if completion_mask is None else prompt_lengths(input_ids, completion_mask)
    if lengths is None:
        return _hidden_after(decoder, k, input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    n, seq = input_ids.shape
    b, dev = n // 2, input_ids.device
    rows = torch.cat([lengths, lengths])  # prompt length per row
    p_max = int(lengths.max())
    p_mask = (torch.arange(p_max, device=dev) < lengths[:, None]).long()
    cache = DynamicCache()
    h_prompt = _hidden_after(
        decoder, k, input_ids=input_ids[:b, :p_max], attention_mask=p_mask, cache=cache, use_cache=True
    )
    # each prompt's cache for its chosen and its rejected row (transformers annotates the index as LongTensor)
    cache.reorder_cache(cast(torch.LongTensor, torch.arange(n, device=dev) % b))
    c_len = attention_mask.sum(dim=1) - rows
    c_max = int(c_len.max())
    j = torch.arange(c_max, device=dev)
    c_mask = (j < c_len[:, None]).long()
    pos = (rows[:, None] + j).clamp(max=seq - 1)
    h_comp = _hidden_after(
        decoder,
        k,
        input_ids=torch.gather(input_ids, 1, pos),
        attention_mask=torch.cat([p_mask.repeat(2, 1), c_mask], dim=1),
        position_ids=rows[:, None] + j,
        cache=cache,
        use_cache=True,
    )
    h = h_prompt.new_zeros(n, seq, h_prompt.size(-1))
    r, t = (torch.arange(seq, device=dev) < rows[:, None]).nonzero(as_tuple=True)
    h[r, t] = h_prompt[r % b, t]
    r, t = c_mask.bool().nonzero(as_tuple=True)
    h[r, rows[r] + t] = h_comp[r, t]
    return h
