"""Prefix caching for the continuous scheduler: the keys and values of a prompt prefix that many requests share
(the chat template with its system prompt, a few-shot preamble) are computed once per model (the base or an
adapter: a LoRA on the attention projections changes them) and reused by every later prefill that starts with
the same tokens.

How a prefill group uses it (:meth:`PrefixStore.plan`, then :func:`prefill_on_prefix`):

1. the longest stored prefix that *every* prompt of the group starts with (each keeps at least one token of its
   own, whose logits the first sampled token needs); failing that, the longest start the group's prompts share
   with each other and with one of the :data:`RECENT` prompts prefilled before (so requests that arrive one at
   a time find their common system prompt too), if it is at least :data:`MIN_PREFIX` tokens: it is encoded now,
   once per model in the group, and stored;
2. each row's KV cache starts as its model's copy of the prefix; only the rest of each prompt (left-padded) runs
   through the model, attending to it.

Rows of a group share one prefix length, so the batch stays a plain ``[rows, width]`` cache that merges into
the running batch as any other. Echo requests (prompt log-probs) need logits at every prompt position and never
use the store. The store keeps the :data:`MAX_ENTRIES` most recently used prefixes.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from politune.models.generation import shared_start

if TYPE_CHECKING:
    from politune.serve.engine import Engine

MIN_PREFIX = 8  # tokens: a shorter shared start is not worth a separate forward pass
MAX_ENTRIES = 32  # (model, prefix) pairs kept, least recently used dropped first
RECENT = 32  # prompts remembered to find a shared start with later ones


@dataclass(eq=False)  # identity: entries are keys of a dict while a batch is built
class PrefixEntry:
    """One model's KV cache of one prefix (one row)."""

    cache: Any  # the model's cache object after encoding the prefix (plain dynamic layers)
    layers: list[Any]  # its layers (``keys`` / ``values``: [1, kv heads, prefix length, head dim])


class PrefixStore:
    """The prefixes already encoded, by (model name, token ids)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.entries: collections.OrderedDict[tuple[str, tuple[int, ...]], PrefixEntry] = (
            collections.OrderedDict()
        )
        self.recent: collections.deque[list[int]] = collections.deque(maxlen=RECENT)

    def plan(self, eng: Engine, prompts: list[list[int]], names: list[str]) -> tuple[int, list[PrefixEntry]]:
        """(prefix length, each row's entry) for this prefill group, encoding what is missing; ``(0, [])`` when
        no prefix is worth it."""
        from politune.serve.batching import cache_layers

        room = min(len(p) for p in prompts) - 1  # every row keeps >= 1 token of its own
        stored = {ids for _, ids in self.entries if len(ids) <= room}
        n = max((len(ids) for ids in stored if all(tuple(p[: len(ids)]) == ids for p in prompts)), default=0)
        if n == 0:
            group = shared_start(prompts)  # for one prompt: all of it
            with_recent = [min(group, shared_start([prompts[0], r])) for r in self.recent]
            n = min(max([group if len(prompts) > 1 else 0, *with_recent]), room)
        self.recent.extend(prompts)
        if n < MIN_PREFIX:
            return 0, []
        ids = tuple(prompts[0][:n])
        for name in dict.fromkeys(names):
            if (name, ids) not in self.entries:
                x = torch.tensor([ids], device=eng.device)
                out = eng.forward(
                    x, torch.ones_like(x), torch.arange(n, device=eng.device)[None], None, [name]
                )
                cache = eng.cache_of(out)
                layers = cache_layers(cache)
                if layers is None:  # not a cache this store can copy rows of
                    return 0, []
                self.entries[(name, ids)] = PrefixEntry(cache, layers)
                while len(self.entries) > self.max_entries:
                    self.entries.popitem(last=False)
            self.entries.move_to_end((name, ids))
        return n, [self.entries[(name, ids)] for name in names]


def prefill_on_prefix(
    eng: Engine, prompts: list[list[int]], names: list[str], n: int, entries: list[PrefixEntry]
) -> tuple[Any, torch.Tensor, torch.Tensor, Any]:
    """Run the rest of each prompt (after its ``n``-token prefix) on a copy of its model's prefix cache.

    Returns ``(output, attention mask [rows, n + width], position ids of the last column, cache)``."""
    rows = len(prompts)
    cache = copy.deepcopy(entries[0].cache)
    distinct = list(dict.fromkeys(entries))
    pick = torch.tensor([distinct.index(e) for e in entries], device=eng.device)
    for i, layer in enumerate(cache.layers):
        layer.keys = torch.cat([e.layers[i].keys for e in distinct])[pick]
        layer.values = torch.cat([e.layers[i].values for e in distinct])[pick]
    rest = [p[n:] for p in prompts]
    width = max(len(r) for r in rest)
    ids, rest_mask = eng.left_padded(rest, width)
    mask = torch.cat([torch.ones((rows, n), dtype=torch.long, device=eng.device), rest_mask], dim=1)
    pos = (n + rest_mask.cumsum(-1) - 1).clamp(min=n)
    out = eng.forward(ids, mask, pos, cache, names)
    return out, mask, pos[:, -1:], eng.cache_of(out)
