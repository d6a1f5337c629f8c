"""What the domain reports about its own work, without knowing who listens: stage timings, cache
lookups, model tokens. The api layer installs a listener at start (Prometheus metrics and
OpenTelemetry spans, api/observability.py); until then, and in tools that never install one, the
calls cost nothing. Labels are small fixed sets (stage and cache names), never user input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

STAGES = ("embed", "sql", "fusion", "rerank", "generate")
CACHES = ("search", "embedding", "answer", "apikey")


class Telemetry(Protocol):
    def stage(self, name: str) -> AbstractContextManager[None]: ...

    def observe(self, stage: str, seconds: float) -> None: ...

    def cache_lookup(self, cache: str, hit: bool) -> None: ...

    def llm_usage(self, provider: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None: ...

    def rows_dropped(self, table: str, n: int) -> None: ...


class _Silent:
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def observe(self, stage: str, seconds: float) -> None:
        return None

    def cache_lookup(self, cache: str, hit: bool) -> None:
        return None

    def llm_usage(self, provider: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        return None

    def rows_dropped(self, table: str, n: int) -> None:
        return None


_current: Telemetry = _Silent()


def install(telemetry: Telemetry) -> None:
    """Set by the api layer once at start; a process has one listener."""
    global _current
    _current = telemetry


def stage(name: str) -> AbstractContextManager[None]:
    return _current.stage(name)


def observe(stage_name: str, seconds: float) -> None:
    """A stage timed by its caller (a stream, where a `with` block does not fit)."""
    _current.observe(stage_name, seconds)


def cache_lookup(cache: str, hit: bool) -> None:
    _current.cache_lookup(cache, hit)


def llm_usage(provider: str, prompt_tokens: int, completion_tokens: int, cost_usd: float = 0.0) -> None:
    _current.llm_usage(provider, prompt_tokens, completion_tokens, cost_usd)


def rows_dropped(table: str, n: int) -> None:
    """Rows written behind a response (the query log) that could not be stored."""
    _current.rows_dropped(table, n)
