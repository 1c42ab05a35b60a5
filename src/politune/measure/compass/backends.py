"""Where answers come from: a local transformers model, or any OpenAI-compatible HTTP server.

Both backends offer the two calls the tracks need:

- ``option_logprobs(prompts, options)``: log P(option | prompt) for every option of every prompt;
- ``generate(prompts, max_new_tokens, temperature, seed)``: an answer per prompt (None when the server failed).

**Local log-prob scoring shares work through the KV cache** (:func:`score_options_cached`):

1. the longest token prefix common to *all* prompts (system prompt, instructions, option list: the statement
   comes last) is encoded once;
2. each batch of prompts encodes only its own suffix on top of a copy of that prefix cache;
3. every option continuation is scored from the prompt's cache (the cache is repeated once per option), so
   the prompt is never re-encoded per option.

:func:`score_options_independent` is the reference it is checked against: every (prompt + option) is an
independent sequence, as lm-evaluation-harness scores multiple choice. Both give the same log-probs (to ~1e-5
in fp32); ``bench/compass_throughput.py`` measures the speed ratio.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from politune.errors import PolituneError
from politune.hardware import cpu_bf16_decided, dtype_name
from politune.models.generation import format_chat, generate

if TYPE_CHECKING:
    from transformers import Cache

    from politune.models.loading import CausalLM, Tokenizer


OptionLists = Sequence[Sequence[str]]  # the answer options of each prompt


def _lcp(seqs: Sequence[Sequence[int]]) -> int:
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def _encode_prefix(
    model: CausalLM, p_ids: Sequence[Sequence[int]], dev: torch.device
) -> tuple[int, Cache | None]:
    """Encode the longest token prefix shared by all prompts once; each prompt keeps >= 1 token of its own."""
    n_pre = min(_lcp(p_ids), min(len(p) for p in p_ids) - 1)
    if n_pre <= 0:
        return 0, None
    out = model(
        input_ids=torch.tensor([list(p_ids[0][:n_pre])], device=dev), use_cache=True, logits_to_keep=1
    )
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
    out = model(
        input_ids=s_ids,
        attention_mask=attn,
        position_ids=pos,
        cache=cache,
        use_cache=True,
        logits_to_keep=keep,
    )
    col = torch.searchsorted(keep, last)
    return out, attn, s_len, out.logits[torch.arange(b, device=dev), col]


def _device(model: CausalLM) -> torch.device:
    return next(model.parameters()).device


def _tok_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def score_options_cached(
    model: CausalLM, tokenizer: Tokenizer, prompts: Sequence[str], options: OptionLists, batch_size: int = 16
) -> list[list[float]]:
    """Sum of log-probs of each option continuation after each (already chat-formatted) prompt.

    ``options[i]`` are the continuations for ``prompts[i]`` (every prompt must have the same number). See the
    module doc for how the shared prefix and each prompt are encoded once.
    """
    if not prompts:
        return []
    k = len(options[0])
    if any(len(o) != k for o in options) or len(options) != len(prompts):
        raise PolituneError("score_options_cached: every prompt needs the same number of options")
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    p_ids = [_tok_ids(tokenizer, p) for p in prompts]
    c_ids = [[_tok_ids(tokenizer, c) for c in opts] for opts in options]
    if any(len(c) == 0 for cs in c_ids for c in cs):
        raise PolituneError("score_options_cached: an option tokenizes to nothing")
    n_pre, prefix_cache = _encode_prefix(model, p_ids, dev)

    results: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        idx = list(range(start, min(start + batch_size, len(prompts))))
        b = len(idx)
        out, attn, s_len, last_logits = _encode_suffixes(
            model, prefix_cache, n_pre, [p_ids[i][n_pre:] for i in idx], pad, dev
        )
        first_lp = torch.log_softmax(last_logits.float(), dim=-1)  # (b, V)
        scores = [[float(first_lp[r, c_ids[i][j][0]]) for j in range(k)] for r, i in enumerate(idx)]

        c_max = max(len(c) for i in idx for c in c_ids[i])
        if c_max > 1:  # multi-token options: feed tokens 0..n-2 of each option on the repeated prompt cache
            cache = out.cache
            cache.batch_repeat_interleave(k)
            n = b * k
            f_len = c_max - 1
            f_ids = torch.full((n, f_len), pad, dtype=torch.long, device=dev)
            f_mask = torch.zeros((n, f_len), dtype=torch.long, device=dev)
            for r, i in enumerate(idx):
                for j in range(k):
                    c = c_ids[i][j][:-1]
                    if c:
                        f_ids[r * k + j, : len(c)] = torch.tensor(c, device=dev)
                        f_mask[r * k + j, : len(c)] = 1
            attn2 = torch.cat([attn.repeat_interleave(k, dim=0), f_mask], dim=1)
            pos2 = (n_pre + s_len.repeat_interleave(k)).unsqueeze(1) + torch.arange(f_len, device=dev)
            out2 = model(
                input_ids=f_ids, attention_mask=attn2, position_ids=pos2, cache=cache, use_cache=True
            )
            lp2 = torch.log_softmax(out2.logits.float(), dim=-1)
            for r, i in enumerate(idx):
                for j in range(k):
                    c = c_ids[i][j]
                    for t in range(1, len(c)):
                        scores[r][j] += float(lp2[r * k + j, t - 1, c[t]])
        results.extend(scores)
    return results


@torch.inference_mode()
def generate_cached(
    model: CausalLM, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """Greedy answers to (already chat-formatted) prompts, reusing the shared-prefix KV cache the same way as
    :func:`score_options_cached`; stops at the model's end-of-turn / EOS tokens, and a finished answer's row
    leaves the batch, so later steps decode only the answers still going. Equivalent to greedy
    ``model.generate`` (checked in the tests)."""
    if not prompts:
        return []
    dev = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = model.generation_config.eos_token_id  # what ``model.generate`` stops at; else the tokenizer's EOS
    eos = eos if eos is not None else tokenizer.eos_token_id
    stop = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    p_ids = [_tok_ids(tokenizer, p) for p in prompts]
    n_pre, prefix_cache = _encode_prefix(model, p_ids, dev)
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        idx = list(range(start, min(start + batch_size, len(prompts))))
        b = len(idx)
        out, attn, s_len, logits = _encode_suffixes(
            model, prefix_cache, n_pre, [p_ids[i][n_pre:] for i in idx], pad, dev
        )
        cache, pos = out.cache, n_pre + s_len
        gen: list[list[int]] = [[] for _ in range(b)]
        live = list(range(b))  # the answer (index into gen) of each row still in the batch
        for step in range(max_new_tokens):
            nxt = logits.argmax(dim=-1).tolist()
            keep = [r for r, t in enumerate(nxt) if t not in stop]
            for r in keep:
                gen[live[r]].append(nxt[r])
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(live):  # finished rows leave the batch (and the KV cache)
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                attn, pos, live = attn[sel], pos[sel], [live[r] for r in keep]
                nxt = [nxt[r] for r in keep]
            attn = torch.cat([attn, torch.ones((len(live), 1), dtype=torch.long, device=dev)], dim=1)
            out = model(
                input_ids=torch.tensor(nxt, device=dev).unsqueeze(1),
                attention_mask=attn,
                position_ids=pos.unsqueeze(1),
                cache=cache,
                use_cache=True,
            )
            cache, pos, logits = out.cache, pos + 1, out.logits[:, -1]
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


class LocalBackend:
    """A loaded transformers model (optionally with a PEFT adapter) and its tokenizer."""

    kind = "local"

    def __init__(
        self, model: CausalLM, tokenizer: Tokenizer, system: str | None = None, batch_size: int = 16
    ) -> None:
        self.model, self.tokenizer, self.system, self.batch_size = model, tokenizer, system, batch_size

    def format(self, prompt: str) -> str:
        return format_chat(self.tokenizer, prompt, self.system)

    def option_logprobs(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[float]]:
        return score_options_cached(
            self.model, self.tokenizer, [self.format(p) for p in prompts], options, self.batch_size
        )

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[str | None]:
        if temperature == 0:  # greedy: share the prompt prefix through the KV cache
            return list(
                generate_cached(
                    self.model,
                    self.tokenizer,
                    [self.format(p) for p in prompts],
                    max_new_tokens,
                    self.batch_size,
                )
            )
        return list(
            generate(
                self.model,
                self.tokenizer,
                list(prompts),
                system=self.system,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                batch_size=self.batch_size,
            )
        )

    def perplexities(self, texts: Sequence[str], max_length: int = 512) -> list[float]:
        """Perplexity of each plain text (no chat template, no system prompt)."""
        from politune.measure.quality import perplexities

        return perplexities(self.model, self.tokenizer, texts, max_length=max_length)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "batch_size": self.batch_size,
            "device": str(_device(self.model)),
            "dtype": dtype_name(next(self.model.parameters()).dtype),
            **({"cpu_dtype_reason": d.reason} if (d := cpu_bf16_decided()) is not None else {}),
        }


class HTTPBackend:
    """An OpenAI-compatible chat server (``politune serve``, vLLM, OpenAI, ...) through ``politune.client``.

    Log-probs come from the first generated token's ``top_logprobs``, so the log-prob track over HTTP needs
    options whose first tokens differ: the tracks then list the options with letters and score the letter.
    """

    kind = "http"
    single_token_options = True

    def __init__(
        self,
        base_url: str | None,
        model: str,
        system: str | None = None,
        concurrency: int = 8,
        api_key: str | None = None,
        top_logprobs: int = 20,
        timeout: float = 60.0,
    ) -> None:
        from politune.client import ChatClient, ClientOptions

        self.client = ChatClient(
            base_url, model, api_key=api_key, options=ClientOptions(concurrency=concurrency, timeout=timeout)
        )
        self.system, self.top_logprobs = system, top_logprobs

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        msgs = [{"role": "user", "content": prompt}]
        return ([{"role": "system", "content": self.system}] if self.system else []) + msgs

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[str | None]:
        res = self.client.chat_many_sync(
            [self._messages(p) for p in prompts],
            max_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
        )
        return [r.text if getattr(r, "ok", False) else None for r in res]

    def option_logprobs(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[float]]:
        res = self.client.chat_many_sync(
            [self._messages(p) for p in prompts],
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=self.top_logprobs,
        )
        from politune.client import ChatResult

        out: list[list[float]] = []
        for r, opts in zip(res, options, strict=True):
            if not isinstance(r, ChatResult) or not r.logprobs:
                raise PolituneError(
                    f"server {self.client.base_url} returned no logprobs "
                    f"({r.reason if not isinstance(r, ChatResult) else 'no logprobs in response'}); "
                    "use --tracks choice,open with this server"
                )
            top: dict[str, float] = {}
            for t in r.logprobs[0]["top_logprobs"]:
                key = t["token"].strip().rstrip(".):").upper()
                top[key] = max(top.get(key, -1e9), t["logprob"])
            out.append([top.get(o.strip().upper(), -1e4) for o in opts])  # absent from top-k: ~ 0 probability
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "http",
            "base_url": self.client.base_url,
            "model": self.client.model,
            "top_logprobs": self.top_logprobs,
        }


# What a task's solver is handed to answer with (``politune.measure.task.Context.backend``).
Backend: TypeAlias = LocalBackend | HTTPBackend
