"""The Redis client every replica uses, and the one place that decides whether Redis is up.

The client's pool is bounded and blocking: a burst of requests waits (briefly) for one of
`max_connections` connections instead of opening a new one each. Unbounded, a 64-request burst
opened 64 connections at once, some missed the 250 ms connect timeout on a busy machine, and a
healthy Redis was declared down.

`RedisHealth` is a small circuit breaker shared by the rate limiter, the shared caches, the
websocket slots and the revocation publisher, so `serverInfo.rateLimits`, `ragql_redis_up` and what
the code actually does always agree:

- up: every call goes to Redis. `failures_to_trip` failures in a row (no success between) mark it
  down; one slow call or one refused connect does not;
- down: calls are skipped (no timeout added to requests). Every `retry_after_s` one call is let
  through as a probe; the first success, from a probe or from a call started before the trip,
  marks it up again at once.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# Credentials embedded in a URL ("scheme://user:secret@host"), scrubbed from anything we log.
_URL_CREDENTIALS = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^@\s/]*@")


def short_error(exc: BaseException, max_len: int = 160) -> str:
    message = _URL_CREDENTIALS.sub(r"\1***@", str(exc)).replace("\n", " ")
    return message if len(message) <= max_len else message[: max_len - 1] + "…"


def redis_client(
    url: str, *, timeout_s: float = 0.25, connect_timeout_s: float = 1.0, max_connections: int = 16
) -> redis.asyncio.Redis:
    """A client with short timeouts and a bounded pool (see the module docstring).

    `timeout_s` bounds each command. Connecting, and waiting for a free pooled connection, get
    `connect_timeout_s`: on a loopback or LAN a connect either succeeds in a millisecond or is
    refused at once, so a slow one is a busy event loop, not a dead server. One immediate retry
    on connection errors replaces a pooled connection that died with a Redis restart. Timeouts
    are not retried: a rate-limit script may already have run and a retry would charge twice.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=connect_timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return redis.asyncio.Redis.from_pool(pool)


class RedisHealth:
    def __init__(
        self,
        *,
        failures_to_trip: int = 3,
        retry_after_s: float = 2.0,
        log_every_s: float = 30.0,
        logger: logging.Logger | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if failures_to_trip < 1:
            raise ValueError("failures_to_trip must be at least 1")
        self.failures_to_trip = failures_to_trip
        self.retry_after_s = retry_after_s
        self.log_every_s = log_every_s
        self._log = logger or logging.getLogger("ragql.redis")
        self._on_change = on_change
        self._failures = 0
        self._down = False
        self._next_probe = 0.0
        self._reason: str | None = None
        self._last_warning = -math.inf

    @property
    def up(self) -> bool:
        return not self._down

    @property
    def reason(self) -> str | None:
        """The last failure's exception class while down, else None."""
        return self._reason if self._down else None

    def allow(self) -> bool:
        """Whether to call Redis now: always while up; while down, one probe per retry_after_s."""
        if not self._down:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.retry_after_s
        return True

    def succeeded(self) -> bool:
        """Record an answer; True when it ends an outage."""
        self._failures = 0
        if not self._down:
            return False
        self._down, self._reason = False, None
        self._log.info("Redis reachable again: shared limits, caches and websocket caps restored")
        if self._on_change is not None:
            self._on_change(True)
        return True

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._reason = type(exc).__name__
        now = time.monotonic()
        if not self._down:
            if self._failures < self.failures_to_trip:
                self._log.info("Redis call failed (%s, %d in a row); still using it", self._reason, self._failures)
                return
            self._down = True
            if self._on_change is not None:
                self._on_change(False)
        self._next_probe = now + self.retry_after_s
        if now - self._last_warning >= self.log_every_s:
            self._last_warning = now
            # Only the class name and a scrubbed, truncated message: never the URL or its password.
            self._log.warning(
                "Redis unreachable (%s: %s, %d failures in a row): rate limits are enforced per replica, "
                "shared caches are skipped and websocket caps are per replica until it answers; "
                "next attempt in %.1fs",
                self._reason,
                short_error(exc),
                self._failures,
                self.retry_after_s,
            )
