"""Local scoring and greedy answering through the KV cache: the machinery under the local backend.

**Log-prob scoring shares work through the KV cache** (:func:`score_options_cached`):

1. the longest token prefix common to *all* prompts (system prompt, instructions, option list: the statement
   comes last) is encoded once;
2. each batch of prompts encodes only its own suffix on top of a copy of that prefix cache;
3. every option continuation is scored from the prompt's cache (the cache is repeated once per option), so
   the prompt is never re-encoded per option.

:func:`score_options_independent` is the reference it is checked against: every (prompt + option) is an
independent sequence, as lm-evaluation-harness scores multiple choice. Both give the same log-probs (to ~1e-5
in fp32); ``bench/compass_throughput.py`` measures the speed ratio.

:func:`generate_cached` answers greedily the same way (shared prefix once, each batch's suffixes on a copy),
and :func:`score_and_answer_cached` does both from one encoding of each prompt: the choice track asks the very
prompts the log-prob track scores.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from politune.errors import PolituneError
from politune.models.generation import shared_start

if TYPE_CHECKING:
    from transformers import Cache

    from politune.models.loading import CausalLM, Tokenizer


OptionLists = Sequence[Sequence[str]]  # the answer options of each prompt


def _forward(
    model: CausalLM,
    ids: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos: torch.Tensor | None = None,
    cache: Cache | None = None,
    keep: int | torch.Tensor = 0,
) -> Any:
    """One forward pass that returns its KV cache (``out.cache``); ``keep``: the positions the LM head runs at
    (0: all). The only place that names transformers' keywords (``cache`` was ``past_key_values`` before 5.x)."""
    return model(ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=keep)


def _encode_prefix(
    model: CausalLM, p_ids: Sequence[Sequence[int]], dev: torch.device
) -> tuple[int, Cache | None]:
    """Encode the longest token prefix shared by all prompts once; each prompt keeps >= 1 token of its own."""
    n_pre = min(shared_start(p_ids), min(len(p) for p in p_ids) - 1)
    if n_pre <= 0:
        return 0, None
    out = _forward(model, torch.tensor([list(p_ids[0][:n_pre])], device=dev), keep=1)
    return n_pre, out.cache


def _encode_suffixes(
    model: CausalLM,
    prefix_cache: Cache | None,
    n_pre: int,
    suf: Sequence[Sequence[int]],
    pad: int,
    dev: torch.device,
) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode each prompt's own tokens (right-padded) on a copy of the prefix cache.

    Returns ``(output, attention mask, suffix lengths, logits after each prompt's last real token)``.
    """
    b = len(suf)
    s_len = torch.tensor([len(x) for x in suf], device=dev)
    s_max = int(s_len.max())
    s_ids = torch.full((b, s_max), pad, dtype=torch.long, device=dev)
    s_mask = torch.zeros((b, s_max), dtype=torch.long, device=dev)
    for r, x in enumerate(suf):
        s_ids[r, : len(x)] = torch.tensor(list(x), device=dev)
        s_mask[r, : len(x)] = 1
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(b)
    attn = torch.cat([torch.ones((b, n_pre), dtype=torch.long, device=dev), s_mask], dim=1)
    pos = (n_pre + torch.arange(s_max, device=dev)).unsqueeze(0).expand(b, -1)
    last = s_len - 1  # position (within the suffix) of each prompt's last real token
    keep = torch.unique(last)  # the LM head runs only where some prompt ends
    out = _forward(model, s_ids, attn, pos, cache, keep)
    col = torch.searchsorted(keep, last)
    return out, attn, s_len, out.logits[torch.arange(b, device=dev), col]


def _device(model: CausalLM) -> torch.device:
    first: torch.nn.Parameter = next(model.parameters())  # CausalLM is untyped (Any)
    return first.device


def _tok_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]  # Tokenizer is untyped (Any)
    return ids


def _stop_ids(model: CausalLM, tokenizer: Tokenizer) -> set[int]:
    """What greedy ``model.generate`` stops at: the generation config's EOS ids, else the tokenizer's."""
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def _greedy_decode(
    model: CausalLM,
    cache: Any,
    attn: torch.Tensor,
    pos: torch.Tensor,
    logits: torch.Tensor,
    stop: set[int],
    max_new_tokens: int,
) -> list[list[int]]:
    """Greedy continuation of each row of a batch whose prompts fill ``cache`` (``attn`` its mask, ``pos`` each
    row's next position, ``logits`` its next-token logits); a row that says a ``stop`` token leaves the batch
    and its KV cache, so later steps decode only the answers still going. ``cache`` is consumed."""
    dev = attn.device
    gen: list[list[int]] = [[] for _ in range(attn.shape[0])]
    live = list(range(len(gen)))  # the answer (index into gen) of each row still in the batch
    for step in range(max_new_tokens):
        nxt = logits.argmax(dim=-1).tolist()
        keep = [r for r, t in enumerate(nxt) if t not in stop]
        for r in keep:
            gen[live[r]].append(nxt[r])
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):
            sel = torch.tensor(keep, device=dev)
            cache.batch_select_indices(sel)
            attn, pos, live, nxt = attn[sel], pos[sel], [live[r] for r in keep], [nxt[r] for r in keep]
        attn = torch.cat([attn, torch.ones((len(live), 1), dtype=torch.long, device=dev)], dim=1)
        out = _forward(model, torch.tensor(nxt, device=dev).unsqueeze(1), attn, pos.unsqueeze(1), cache)
        cache, pos, logits = out.cache, pos + 1, out.logits[:, -1]
    return gen


def _add_option_tails(
    model: CausalLM,
    cache: Any,
    attn: torch.Tensor,
    ends: torch.Tensor,
    c_ids: list[list[list[int]]],
    scores: list[list[float]],
    pad: int,
) -> None:
    """Add the log-probs of tokens 1.. of each multi-token option to ``scores`` (row r, option j): tokens
    0..n-2 of every option are fed on the prompt's cache, repeated once per option (``cache`` is consumed;
    ``ends``: the position after each prompt's last token)."""
    dev, b, k = attn.device, len(c_ids), len(c_ids[0])
    f_len = max(len(c) for cs in c_ids for c in cs) - 1
    cache.batch_repeat_interleave(k)
    f_ids = torch.full((b * k, f_len), pad, dtype=torch.long, device=dev)
    f_mask = torch.zeros((b * k, f_len), dtype=torch.long, device=dev)
    for r in range(b):
        for j, c in enumerate(c_ids[r]):
            if len(c) > 1:
                f_ids[r * k + j, : len(c) - 1] = torch.tensor(c[:-1], device=dev)
                f_mask[r * k + j, : len(c) - 1] = 1
    attn2 = torch.cat([attn.repeat_interleave(k, dim=0), f_mask], dim=1)
    pos2 = ends.repeat_interleave(k).unsqueeze(1) + torch.arange(f_len, device=dev)
    out2 = _forward(model, f_ids, attn2, pos2, cache)
    lp2 = torch.log_softmax(out2.logits.float(), dim=-1)
    for r in range(b):
        for j, c in enumerate(c_ids[r]):
            for t in range(1, len(c)):
                scores[r][j] += float(lp2[r * k + j, t - 1, c[t]])


def score_options_cached(
    model: CausalLM, tokenizer: Tokenizer, prompts: Sequence[str], options: OptionLists, batch_size: int = 16
) -> list[list[float]]:
    """Sum of log-probs of each option continuation after each (already chat-formatted) prompt.

    ``options[i]`` are the continuations for ``prompts[i]`` (every prompt must have the same number). See the
    module doc for how the shared prefix and each prompt are encoded once.
    """
    return score_and_answer_cached(model, tokenizer, prompts, options, batch_size)[0]


@torch.inference_mode()
def score_and_answer_cached(
    model: CausalLM,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    options: OptionLists,
    batch_size: int = 16,
    answer_tokens: int = 0,
) -> tuple[list[list[float]], list[str] | None]:
    """:func:`score_options_cached`, and with ``answer_tokens`` > 0 also each prompt's greedy answer of up to
    that many tokens, decoded from the same prompt encoding (what :func:`generate_cached` answers), so a
    closed-form prompt that is both scored and answered is encoded once; else ``None``."""
    if not prompts:
        return [], ([] if answer_tokens else None)
    k = len(options[0])
    if any(len(o) != k for o in options) or len(options) != len(prompts):
        raise PolituneError("score_options: every prompt needs the same number of options")
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    p_ids = [_tok_ids(tokenizer, p) for p in prompts]
    c_ids = [[_tok_ids(tokenizer, c) for c in opts] for opts in options]
    if any(len(c) == 0 for cs in c_ids for c in cs):
        raise PolituneError("score_options: an option tokenizes to nothing")
    n_pre, prefix_cache = _encode_prefix(model, p_ids, dev)
    stop = _stop_ids(model, tokenizer)
    results: list[list[float]] = []
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        idx = list(range(start, min(start + batch_size, len(prompts))))
        out, attn, s_len, last_logits = _encode_suffixes(
            model, prefix_cache, n_pre, [p_ids[i][n_pre:] for i in idx], pad, dev
        )
        if answer_tokens:
            cache = copy.deepcopy(out.cache)
            gen = _greedy_decode(model, cache, attn, n_pre + s_len, last_logits, stop, answer_tokens)
            answers.extend(tokenizer.decode(g, skip_special_tokens=True).strip() for g in gen)
        first_lp = torch.log_softmax(last_logits.float(), dim=-1)  # (b, V)
        scores = [[float(first_lp[r, c_ids[i][j][0]]) for j in range(k)] for r, i in enumerate(idx)]
        if max(len(c) for i in idx for c in c_ids[i]) > 1:
            _add_option_tails(model, out.cache, attn, n_pre + s_len, [c_ids[i] for i in idx], scores, pad)
        results.extend(scores)
    return results, (answers if answer_tokens else None)


@torch.inference_mode()
def generate_cached(
    model: CausalLM, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy answers to (already chat-formatted) prompts, reusing the shared-prefix KV cache the same way as
    :func:`score_options_cached`; stops at the model's end-of-turn / EOS tokens (:func:`_greedy_decode`).
    Equivalent to greedy ``model.generate`` (checked in the tests)."""
    if not prompts:
        return []
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop = _stop_ids(model, tokenizer)
    p_ids = [_tok_ids(tokenizer, p) for p in prompts]
    n_pre, prefix_cache = _encode_prefix(model, p_ids, dev)
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        idx = list(range(start, min(start + batch_size, len(prompts))))
        out, attn, s_len, logits = _encode_suffixes(
            model, prefix_cache, n_pre, [p_ids[i][n_pre:] for i in idx], pad, dev
        )
        gen = _greedy_decode(model, out.cache, attn, n_pre + s_len, logits, stop, max_new_tokens)
        texts.extend(tokenizer.decode(g, skip_special_tokens=True).strip() for g in gen)
    return texts


@torch.inference_mode()
def score_options_independent(
    model: CausalLM, tokenizer: Tokenizer, prompts: Sequence[str], options: OptionLists, batch_size: int = 16
) -> list[list[float]]:
    """Reference scorer: each (prompt + option) is its own sequence, batched with right padding, the way
    lm-evaluation-harness scores ``loglikelihood`` requests (context and continuation tokenized separately,
    the continuation's log-probs read from the logits before each of its tokens)."""
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    reqs = []  # (prompt index, option index, context ids, continuation ids)
    for i, (p, opts) in enumerate(zip(prompts, options, strict=True)):
        ctx = _tok_ids(tokenizer, p)
        for j, c in enumerate(opts):
            reqs.append((i, j, ctx, _tok_ids(tokenizer, c)))
    # lm-eval sorts requests by descending total length so batches pad little
    order = sorted(range(len(reqs)), key=lambda r: -(len(reqs[r][2]) + len(reqs[r][3])))
    out_scores = [[0.0] * len(o) for o in options]
    for start in range(0, len(order), batch_size):
        chunk = [reqs[r] for r in order[start : start + batch_size]]
        seqs = [(ctx + cont)[:-1] for _, _, ctx, cont in chunk]
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), pad, dtype=torch.long, device=dev)
        mask = torch.zeros((len(seqs), L), dtype=torch.long, device=dev)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, device=dev)
            mask[r, : len(s)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        lp = torch.log_softmax(logits.float(), dim=-1)
        for r, (i, j, ctx, cont) in enumerate(chunk):
            n = len(ctx) + len(cont) - 1
            rows = lp[r, n - len(cont) : n]
            out_scores[i][j] = float(rows.gather(1, torch.tensor(cont, device=dev).unsqueeze(1)).sum())
    return out_scores
