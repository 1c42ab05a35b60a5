"""Where answers come from: a local transformers model, or any OpenAI-compatible HTTP server.

Both backends offer the two calls the tracks need:

- ``option_logprobs(prompts, options)``: log P(option | prompt) for every option of every prompt;
- ``generate(prompts, max_new_tokens, temperature, seed)``: an answer per prompt (None when the server failed).

The local backend scores and answers through the KV cache (``kvcache.py``: the prompts' shared prefix is
encoded once, each prompt's own tokens once per call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from politune.errors import PolituneError
from politune.hardware import cpu_bf16_decided, dtype_name
from politune.measure.compass.kvcache import generate_cached, score_and_answer_cached
from politune.models.generation import format_chat, generate

if TYPE_CHECKING:
    from politune.models.loading import CausalLM, Tokenizer


class LocalBackend:
    """A loaded transformers model (optionally with a PEFT adapter) and its tokenizer."""

    kind = "local"

    def __init__(
        self, model: CausalLM, tokenizer: Tokenizer, system: str | None = None, batch_size: int = 16
    ) -> None:
        self.model, self.tokenizer, self.system, self.batch_size = model, tokenizer, system, batch_size
        # > 0: option_logprobs also answers each prompt greedily (that many tokens) from the same encoding and
        # keeps the answers for generate() (the choice track asks the log-prob track's prompts; see answer_too)
        self.answer_tokens = 0
        self._answers: dict[tuple[str, int], str] = {}

    def format(self, prompt: str) -> str:
        return format_chat(self.tokenizer, prompt, self.system)

    @contextlib.contextmanager
    def answer_too(self, max_new_tokens: int) -> Iterator[None]:
        """Within the block, log-prob scoring also keeps each prompt's greedy answer of ``max_new_tokens``, and
        a greedy ``generate`` of prompts all scored so is answered from them (the same text, without encoding
        the prompts again); forgotten on exit."""
        self.answer_tokens = max_new_tokens
        try:
            yield
        finally:
            self.answer_tokens = 0
            self._answers.clear()

    def option_logprobs(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[float]]:
        chats = [self.format(p) for p in prompts]
        scores, answers = score_and_answer_cached(
            self.model, self.tokenizer, chats, options, self.batch_size, self.answer_tokens
        )
        if answers is not None:
            self._answers.update({(c, self.answer_tokens): a for c, a in zip(chats, answers, strict=True)})
        return scores

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[str | None]:
        if temperature == 0:  # greedy: answers kept by answer_too, else the shared-prefix KV cache
            chats = [self.format(p) for p in prompts]
            known = [self._answers.get((c, max_new_tokens)) for c in chats]
            if known and all(a is not None for a in known):
                return list(known)
            return list(generate_cached(self.model, self.tokenizer, chats, max_new_tokens, self.batch_size))
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
            "device": str(next(self.model.parameters()).device),
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
