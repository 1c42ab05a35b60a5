"""Teachers: the models that filter posts and write the triplets.

A teacher answers a batch of chat conversations. Two kinds:

- :class:`LocalTeacher`: a transformers model loaded with ``politune.models.load_model`` (registry name, local
  folder or hub id), answering a whole batch in one left-padded ``politune.models.generate`` call;
- :class:`HTTPTeacher`: any OpenAI-compatible server (vLLM, Ollama, OpenAI, ``politune serve``) through
  :class:`politune.client.ChatClient`: async, bounded concurrency, rate limit, retries with backoff.

``complete(ask, on_result)`` reports each answer through ``on_result(index, text, error)`` as soon as it
exists (so the pipeline can log it before the next one arrives) and never raises for one failed item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from politune.client import ChatClient
    from politune.models.loading import CausalLM, Tokenizer

log = logging.getLogger("politune")

Message = dict[str, str]
OnResult = Callable[[int, str | None, str | None], None]  # (index, text, error)


@dataclass
class Ask:
    """One batch for a teacher: the conversations with their seeds and sampling settings; ``skip`` lists the
    indices whose answers are already known."""

    convs: Sequence[list[Message]]
    seeds: Sequence[int]
    max_tokens: int
    temperature: float
    json_mode: bool = False
    skip: Collection[int] = ()


class Teacher(Protocol):
    name: str  # recorded in every output row and in the cache key, e.g. "local:smollm2-135m"
    batch_size: int  # how many conversations the pipeline hands over at once

    def complete(self, ask: Ask, on_result: OnResult) -> None:
        """Answer ``ask.convs``; ``ask.skip`` lists indices whose answers are already known (an HTTP teacher does not
        ask for them; a local teacher still runs the whole batch so its composition, hence its output, is the
        same as in an uninterrupted run, and reports only the others)."""
        ...


class LocalTeacher:
    """A local transformers model. Greedy when ``temperature == 0``; the batch's sampling seed is the seed of
    its first item, so a given batch always produces the same text."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8):
        self.model_ref = model
        self.name = f"local:{model}"
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self._loaded: tuple[CausalLM, Tokenizer] | None = None

    def load(self) -> tuple[CausalLM, Tokenizer]:
        if self._loaded is None:
            from politune.models import load_model

            self._loaded = load_model(self.model_ref, device=self.device, dtype=self.dtype)
        return self._loaded

    def complete(self, ask: Ask, on_result: OnResult) -> None:
        from politune.models import generate

        if not ask.convs or len(ask.skip) >= len(ask.convs):
            return
        model, tok = self.load()
        texts = generate(
            model,
            tok,
            list(ask.convs),
            max_new_tokens=ask.max_tokens,
            temperature=ask.temperature,
            seed=int(ask.seeds[0]),
            batch_size=len(ask.convs),
        )
        for i, text in enumerate(texts):
            if i not in ask.skip:
                on_result(i, text, None)


class HTTPTeacher:
    """A model behind an OpenAI-compatible server. ``json_mode`` asks for ``response_format=json_object`` in
    the filter stage (vLLM, OpenAI and Ollama support it)."""

    def __init__(self, client: ChatClient, batch_size: int | None = None):
        self.client = client
        self.name = f"http:{client.model}"
        self.batch_size = batch_size or max(
            1024, 16 * client.concurrency
        )  # whole rounds: no drain between chunks

    def complete(self, ask: Ask, on_result: OnResult) -> None:
        todo = [i for i in range(len(ask.convs)) if i not in ask.skip]
        if not todo:
            return
        params: dict[str, Any] = {"max_tokens": ask.max_tokens, "temperature": ask.temperature}
        if ask.json_mode:
            params["response_format"] = {"type": "json_object"}

        async def run() -> None:
            import asyncio

            from politune.client import ChatError

            async def one(i: int) -> None:
                r = await self.client.try_chat(ask.convs[i], **params, seed=int(ask.seeds[i]))
                if isinstance(r, ChatError):
                    on_result(i, None, r.reason)
                else:
                    on_result(i, r.text, None)

            try:
                await asyncio.gather(*(one(i) for i in todo))
            finally:
                await self.client.aclose()

        from politune.client import run_sync

        run_sync(run)
