"""One Redis connection pool for the shared caches, the rate limiter, the revocation channel and
the websocket cap, and the one `RedisHealth` (api/redis_health.py) that decides whether Redis is up.

While Redis is considered down calls are skipped (a dead server does not add a timeout to every
request); the state shows in the `ragql_redis_up` gauge, skipped and failed calls in
`ragql_redis_errors_total`. Nothing here raises into a request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
from redis.exceptions import RedisError

from api import metrics
from api.redis_health import RedisHealth, redis_client

log = logging.getLogger("ragql.redis")
T = TypeVar("T")


def _gauge(up: bool) -> None:
    metrics.REDIS_UP.set(1 if up else 0)


class RedisLink:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        retry_after_s: float = 2.0,
        log_every_s: float = 30.0,
        failures_to_trip: int = 3,
    ) -> None:
        self.client = client
        self.health = RedisHealth(
            failures_to_trip=failures_to_trip,
            retry_after_s=retry_after_s,
            log_every_s=log_every_s,
            logger=log,
            on_change=_gauge,
        )
        self._recovery_hooks: list[Callable[[], Awaitable[None]]] = []
        metrics.REDIS_UP.set(1)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.25) -> RedisLink:
        return cls(redis_client(url, timeout_s=timeout_s))

    @property
    def up(self) -> bool:
        return self.health.up

    def on_recovery(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run after Redis answers again (e.g. replay version bumps that failed meanwhile)."""
        self._recovery_hooks.append(hook)

    async def call(self, component: str, fn: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> tuple[bool, T | None]:
        """(True, value) when Redis answered; (False, None) when it is down or the call failed."""
        if not self.health.allow():
            return False, None
        try:
            value = await fn(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.mark_down(component, exc)
            return False, None
        if self.health.succeeded():
            for hook in self._recovery_hooks:
                await hook()
        return True, value

    def mark_down(self, component: str, exc: BaseException) -> None:
        """A failed call: counts towards marking Redis down (api/redis_health.py)."""
        metrics.REDIS_ERRORS.labels(component).inc()
        self.health.failed(exc)

    async def ping(self) -> bool:
        ok, _ = await self.call("probe", lambda r: r.ping())
        return ok

    async def aclose(self) -> None:
        await self.client.aclose()
