"""Chat models behind one small Protocol: OpenAI, or anything that speaks its Chat Completions API
(vLLM, Ollama, LM Studio) through `base_url`. Every SDK failure becomes a `ProviderFailure` with a
kind, so callers decide about fallbacks without knowing the SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from domain import telemetry

FailureKind = Literal["timeout", "rate_limited", "unavailable", "bad_response", "not_configured"]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ProviderFailure(Exception):
    """A provider call did not produce a usable result. `kind` is stable; the message is for logs."""

    def __init__(self, provider: str, kind: FailureKind, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{provider} {kind}: {detail}")
        self.provider = provider
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


Message = dict[str, str]


class ChatModel(Protocol):
    name: str

    async def complete(self, messages: list[Message], *, max_tokens: int) -> tuple[str, Usage | None]: ...

    def stream(self, messages: list[Message], *, max_tokens: int) -> AsyncGenerator[str | Usage, None]:
        """Yields text deltas as they arrive, then a `Usage` when the provider reports one."""
        ...


def classify(provider: str, exc: BaseException) -> ProviderFailure:
    """Map an SDK or transport exception onto a failure kind."""
    import httpx
    import openai

    if isinstance(exc, ProviderFailure):
        return exc
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        return ProviderFailure(provider, "timeout", "no response in time")
    if isinstance(exc, openai.RateLimitError):
        raw = exc.response.headers.get("retry-after")
        retry = _seconds(raw)
        return ProviderFailure(provider, "rate_limited", f"HTTP 429 (Retry-After: {raw})", retry_after=retry)
    if isinstance(exc, openai.APIStatusError):
        return ProviderFailure(provider, "unavailable", f"HTTP {exc.status_code}")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return ProviderFailure(provider, "unavailable", f"connection failed: {type(exc).__name__}")
    # json.JSONDecodeError, which the SDK lets through for a malformed body, is a ValueError.
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError):
        return ProviderFailure(provider, "bad_response", f"unreadable response: {type(exc).__name__}")
    return ProviderFailure(provider, "unavailable", f"{type(exc).__name__}")


def _seconds(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class OpenAIChat:
    """Chat Completions with bounded retries (the SDK honours Retry-After) and a per-read timeout,
    which for a stream bounds the silence between two chunks."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        temperature: float = 0.1,
        usd_per_million: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        from openai import AsyncOpenAI

        self.name = model
        # (prompt, completion) prices from settings: what ragql_llm_cost_usd_total estimates with.
        self._prices = usd_per_million
        self._provider = "llm"
        self._temperature = temperature
        # Local OpenAI-compatible servers often need no key, but the SDK insists on one.
        self._client = AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    async def complete(self, messages: list[Message], *, max_tokens: int) -> tuple[str, Usage | None]:
        try:
            resp = await self._client.chat.completions.create(
                model=self.name,
                messages=cast(Any, messages),
                max_tokens=max_tokens,
                temperature=self._temperature,
            )
            content = resp.choices[0].message.content if resp.choices else None
        except Exception as exc:
            raise classify(self._provider, exc) from exc
        if content is None:
            raise ProviderFailure(self._provider, "bad_response", "the reply has no message content")
        usage = Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens) if resp.usage else None
        self._count(usage)
        return content, usage

    def _count(self, usage: Usage | None) -> None:
        if usage is not None:
            cost = (usage.prompt_tokens * self._prices[0] + usage.completion_tokens * self._prices[1]) / 1e6
            telemetry.llm_usage("openai", usage.prompt_tokens, usage.completion_tokens, cost)

    async def stream(self, messages: list[Message], *, max_tokens: int) -> AsyncGenerator[str | Usage, None]:
        # `async with` closes the HTTP response however this generator ends: finished, failed, or
        # closed early because the subscriber went away. Closing it is what cancels the upstream.
        try:
            stream: Any = await self._client.chat.completions.create(
                model=self.name,
                messages=cast(Any, messages),
                max_tokens=max_tokens,
                temperature=self._temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
        except Exception as exc:
            raise classify(self._provider, exc) from exc
        async with stream:
            try:
                async for chunk in stream:
                    if chunk.choices:
                        delta = chunk.choices[0].delta.content
                        if delta:
                            yield delta
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                        self._count(usage)
                        yield usage
            except Exception as exc:
                raise classify(self._provider, exc) from exc
