"""Generators turn a question and numbered sources into a stream of text (and, for models that
report it, a `Usage`). The LLM one streams from any OpenAI-compatible chat endpoint."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Protocol

from domain.answers.prompt import Audience, Turn, answer_messages
from domain.answers.sources import Source
from domain.providers.llm import ChatModel, Usage


class Generator(Protocol):
    name: str
    uses_audience: bool

    def stream(
        self, question: str, sources: Sequence[Source], *, audience: Audience | None, history: Sequence[Turn]
    ) -> AsyncGenerator[str | Usage, None]: ...


class LLMGenerator:
    uses_audience = True

    def __init__(self, chat: ChatModel, *, max_tokens: int = 700) -> None:
        self.chat = chat
        self.name = f"llm:{chat.name}"
        self._max_tokens = max_tokens

    async def stream(
        self, question: str, sources: Sequence[Source], *, audience: Audience | None, history: Sequence[Turn]
    ) -> AsyncGenerator[str | Usage, None]:
        messages = answer_messages(question, [s.as_block() for s in sources], audience=audience, history=history)
        # aclosing: if our consumer stops early, the provider stream is closed now, not at GC time.
        async with aclosing(self.chat.stream(messages, max_tokens=self._max_tokens)) as items:
            async for item in items:
                yield item
