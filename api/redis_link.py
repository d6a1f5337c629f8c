"""One Redis connection for the shared caches, the revocation channel and the websocket cap, and
one place that decides whether Redis is up.

A failed call marks Redis down for `retry_after_s` (calls are skipped meanwhile, so a dead server
does not add a timeout to every request), logs one WARNING per `log_every_s`, and shows in the
`ragql_redis_up` gauge and `ragql_redis_errors_total`. Nothing here raises into a request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
from redis.exceptions import RedisError

from api import metrics
from api.ratelimit import _short_error, redis_client

log = logging.getLogger("ragql.redis")
T = TypeVar("T")


class RedisLink:
    def __init__(self, client: redis.asyncio.Redis, *, retry_after_s: float = 2.0, log_every_s: float = 30.0) -> None:
        self.client = client
        self.retry_after_s = retry_after_s
        self.log_every_s = log_every_s
        self._down_until = 0.0
        self._down = False
        self._last_warning = -math.inf
        self._recovery_hooks: list[Callable[[], Awaitable[None]]] = []
        metrics.REDIS_UP.set(1)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.25) -> RedisLink:
        return cls(redis_client(url, timeout_s=timeout_s))

    @property
    def up(self) -> bool:
        return not self._down

    def on_recovery(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run after Redis answers again (e.g. replay version bumps that failed meanwhile)."""
        self._recovery_hooks.append(hook)

    async def call(self, component: str, fn: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> tuple[bool, T | None]:
        """(True, value) when Redis answered; (False, None) when it is down or the call failed."""
        if self._down and time.monotonic() < self._down_until:
            return False, None
        try:
            value = await fn(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.mark_down(component, exc)
            return False, None
        if self._down:
            await self._recovered()
        return True, value

    def mark_down(self, component: str, exc: BaseException) -> None:
        now = time.monotonic()
        metrics.REDIS_ERRORS.labels(component).inc()
        metrics.REDIS_UP.set(0)
        self._down = True
        self._down_until = now + self.retry_after_s
        if now - self._last_warning >= self.log_every_s:
            self._last_warning = now
            log.warning(
                "Redis unreachable (%s: %s): shared caches are skipped and websocket caps are per replica "
                "until it answers; next attempt in %.1fs",
                type(exc).__name__,
                _short_error(exc),
                self.retry_after_s,
            )

    async def _recovered(self) -> None:
        self._down = False
        metrics.REDIS_UP.set(1)
        log.info("Redis reachable again: shared caches and websocket caps restored")
        for hook in self._recovery_hooks:
            await hook()

    async def ping(self) -> bool:
        ok, _ = await self.call("probe", lambda r: r.ping())
        return ok

    async def aclose(self) -> None:
        await self.client.aclose()
