"""Request rate limiting: an in-process first line plus a shared limit in Redis.

Every request is charged to one or more buckets (per API key, per user, per IP, per tenant).
Two lines enforce each bucket's :class:`Rate`:

* **Local (per replica).** One :class:`aiolimiter.AsyncLimiter` per bucket key. If this replica
  alone has already spent a bucket's whole limit, the shared limit is certainly exceeded too, so
  the request is denied without a Redis round trip. This is also the only line when Redis is not
  configured (embedded dev mode) or is unreachable.
* **Shared (all replicas).** One atomic Lua script in Redis implementing GCRA (generic cell rate
  algorithm) over all of the request's buckets at once, all-or-nothing, timed by the Redis
  server's clock so that every replica agrees on "now".

A Redis outage never fails a request and never disables limiting: the limiter degrades to the
local line (so the effective limit becomes ``limit`` per replica). Whether Redis is used is one
`RedisHealth` (api/redis_health.py, shared with the caches in the app): it takes
``failures_to_trip`` failures in a row to stop using Redis, then one probe per
``retry_redis_after_s``, and ``backend`` (serverInfo.rateLimits) reads the same state the next
check acts on.

If you run Redis Cluster, all of one request's keys must hash to one slot: put a hash tag in the
prefix (e.g. ``"{ragql:rl}:"``), otherwise the script fails with CROSSSLOT and the limiter stays
on the local fallback.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio
from aiolimiter import AsyncLimiter
from redis.exceptions import RedisError

from api.redis_health import RedisHealth, redis_client

__all__ = ["BACKEND_LOCAL", "BACKEND_REDIS", "Bucket", "Decision", "Rate", "RateLimiter", "redis_client"]

logger = logging.getLogger("ragql.ratelimit")

BACKEND_REDIS = "redis"
BACKEND_LOCAL = "local"

# Slack for float rounding: with e.g. limit 7 per 60 s, 7 * (60/7) can land a hair above 60, and
# the last unit of a full burst must still fit.
_EPSILON = 1e-6


@dataclass(frozen=True)
class Rate:
    """``limit`` units per ``period_s`` seconds; ``limit`` is also the burst."""

    limit: int
    period_s: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("Rate.limit must be at least 1")
        if not (self.period_s > 0 and math.isfinite(self.period_s)):
            raise ValueError("Rate.period_s must be a positive finite number")

    @property
    def per_second(self) -> float:
        """How many units come back per second."""
        return self.limit / self.period_s


@dataclass(frozen=True)
class Bucket:
    """One limit that a request counts against, e.g. ``"key:<api key id>"`` or ``"ip:<addr>"``."""

    key: str
    rate: Rate


@dataclass(frozen=True)
class Decision:
    """The outcome of one :meth:`RateLimiter.check`, ready for 429 / RateLimit-* headers."""

    allowed: bool
    retry_after_s: float  # 0.0 when allowed; else seconds until the charge would fit
    remaining: int  # units left in the tightest bucket after this charge (0 when denied)
    limit: int  # that bucket's limit
    restore_rate: float  # that bucket's units per second
    backend: str  # which line decided: "redis" or "local"


# GCRA over all KEYS at once. Per key we store its TAT (theoretical arrival time, ms since the
# epoch, as a float string). With emission interval T = period / limit, a charge of `cost` moves
# the TAT to max(TAT, now) + cost * T, and it fits when that new TAT is at most `period` ahead of
# now (burst tolerance period - T on top of the unit itself): from an empty bucket exactly `limit`
# units fit at once, and afterwards one unit comes back every T ms. Nothing is written unless
# every key fits, which makes the multi-bucket charge all-or-nothing; the script runs atomically.
#   KEYS[i]        bucket keys
#   ARGV[1]        cost
#   ARGV[2i], ARGV[2i+1]   limit and period (ms) of KEYS[i]
# Returns {allowed 0/1, retry_after_ms (string: Lua numbers would be truncated to integers),
#          remaining units of the tightest bucket, 1-based index of the bucket described}.
_GCRA_LUA = """
if redis.replicate_commands then
  -- Redis < 5 needs this before writing after the non-deterministic TIME; later it is a no-op.
  redis.replicate_commands()
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
local eps = tonumber(ARGV[2 * #KEYS + 2])
local new_tats = {}
local worst_wait, worst_i = -1, 0
local min_rem, min_i = nil, 1
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + cost * interval
  local over = new_tat - now - period
  if over > eps then
    if over > worst_wait then
      worst_wait, worst_i = over, i
    end
  else
    new_tats[i] = new_tat
    local rem = math.max(0, math.floor((period - (new_tat - now)) / interval + eps))
    if min_rem == nil or rem < min_rem then
      min_rem, min_i = rem, i
    end
  end
end
if worst_i > 0 then
  return {0, string.format('%.3f', worst_wait), 0, worst_i}
end
for i = 1, #KEYS do
  -- The key is worthless once the TAT is in the past (bucket full again): let it expire then.
  local ttl = math.max(1, math.ceil(new_tats[i] - now))
  redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', ttl)
end
return {1, '0', min_rem, min_i}
"""


class RateLimiter:
    """Charges requests against :class:`Bucket` limits; see the module docstring for the design.

    ``redis=None`` means local limits only. The limiter closes ``redis`` in ``aclose`` unless it
    was given a shared ``health`` (then the client belongs to whoever shares it, api/redis_link.py).
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis | None,
        *,
        prefix: str = "ragql:rl:",
        retry_redis_after_s: float = 5.0,
        log_every_s: float = 30.0,
        failures_to_trip: int = 3,
        max_local_keys: int = 50_000,
        health: RedisHealth | None = None,
    ) -> None:
        if max_local_keys < 1:
            raise ValueError("max_local_keys must be at least 1")
        self._redis = redis
        self._script = redis.register_script(_GCRA_LUA) if redis is not None else None
        self._prefix = prefix
        self._owns_redis = health is None
        self._health = health or RedisHealth(
            failures_to_trip=failures_to_trip,
            retry_after_s=retry_redis_after_s,
            log_every_s=log_every_s,
            logger=logger,
        )
        self._max_local_keys = max_local_keys
        # Bounded LRU: one limiter per bucket key. Evicting a key forgets its local level, which is
        # harmless with Redis (the shared limit still holds) and only loosens the dev-mode limit.
        self._local: OrderedDict[str, AsyncLimiter] = OrderedDict()

    @property
    def backend(self) -> str:
        """``"redis"``, ``"local"``, or ``"local (redis unreachable: <error class>)"``: what the next
        check uses (a check while Redis is down may be its probe, which then reports ``"redis"``)."""
        if self._redis is None:
            return BACKEND_LOCAL
        if not self._health.up:
            return f"{BACKEND_LOCAL} (redis unreachable: {self._health.reason})"
        return BACKEND_REDIS

    async def check(self, buckets: Sequence[Bucket], cost: int = 1) -> Decision:
        """Charge ``cost`` units to every bucket, or to none of them if any would be over its limit.

        When allowed, the decision describes the bucket with the fewest units left. When denied,
        ``retry_after_s`` is the longest wait among the denying buckets. A ``cost`` above some
        bucket's ``limit`` can never fit however long the caller waits; it is denied without
        charging anything, with ``retry_after_s`` equal to that bucket's period (so a client that
        honours Retry-After backs off instead of spinning), and callers should treat it as final.

        Redis failures never propagate: the decision then comes from the local limiters alone.
        """
        _validate(buckets, cost)
        never_fits = [b for b in buckets if cost > b.rate.limit]
        if never_fits:
            return _never_fits(never_fits)

        limiters = [self._local_limiter(b) for b in buckets]
        denied = _local_denial(buckets, limiters, cost)
        if denied is not None:
            # This replica alone has used the limit up, so the shared limit is exceeded as well.
            return denied

        if self._should_try_redis():
            shared = await self._check_redis(buckets, cost)
            if shared is not None:
                if shared.allowed:
                    await _charge_local(limiters, cost)
                return shared
            # Other requests may have charged the local limiters while we waited on Redis.
            denied = _local_denial(buckets, limiters, cost)
            if denied is not None:
                return denied

        await _charge_local(limiters, cost)
        return _local_allowed(buckets, limiters)

    async def aclose(self) -> None:
        """Close the Redis client (if any) and forget the local limiters."""
        self._local.clear()
        if self._redis is not None and self._owns_redis:
            await self._redis.aclose()

    # --- local line -------------------------------------------------------------------------

    def _local_limiter(self, bucket: Bucket) -> AsyncLimiter:
        limiter = self._local.get(bucket.key)
        rate = bucket.rate
        if limiter is not None and limiter.max_rate == rate.limit and limiter.time_period == rate.period_s:
            self._local.move_to_end(bucket.key)
            return limiter
        # New key, or the bucket's rate changed (e.g. a plan change): start a fresh limiter.
        limiter = AsyncLimiter(rate.limit, rate.period_s)
        self._local[bucket.key] = limiter
        self._local.move_to_end(bucket.key)
        while len(self._local) > self._max_local_keys:
            self._local.popitem(last=False)
        return limiter

    # --- shared line ------------------------------------------------------------------------

    def _should_try_redis(self) -> bool:
        return self._script is not None and self._health.allow()

    async def _check_redis(self, buckets: Sequence[Bucket], cost: int) -> Decision | None:
        """The shared decision, or None if Redis could not give one (then we fall back to local)."""
        assert self._script is not None
        keys = [self._prefix + b.key for b in buckets]
        args: list[int | float] = [cost]
        for b in buckets:
            args += [b.rate.limit, b.rate.period_s * 1000.0]
        args.append(_EPSILON)
        try:
            raw = await self._script(keys=keys, args=args)
            decision = _parse_redis_reply(raw, buckets)
        except (RedisError, OSError, TimeoutError, ValueError, TypeError, IndexError) as exc:
            # ValueError/TypeError/IndexError: a reply we can't read is as useless as no reply.
            self._mark_redis_down(exc)
            return None
        self._mark_redis_up()
        return decision

    def _mark_redis_down(self, exc: BaseException) -> None:
        self._health.failed(exc)

    def _mark_redis_up(self) -> None:
        self._health.succeeded()


# --- helpers -----------------------------------------------------------------------------------


def _validate(buckets: Sequence[Bucket], cost: int) -> None:
    if not buckets:
        raise ValueError("check() needs at least one bucket")
    if cost < 1:
        raise ValueError("cost must be at least 1")
    keys = [b.key for b in buckets]
    if len(set(keys)) != len(keys):
        # The same key twice would be charged once in Redis but twice locally; refuse the ambiguity.
        raise ValueError("bucket keys in one check must be distinct")


def _never_fits(buckets: Sequence[Bucket]) -> Decision:
    worst = max(buckets, key=lambda b: b.rate.period_s)
    return Decision(
        allowed=False,
        retry_after_s=worst.rate.period_s,
        remaining=0,
        limit=worst.rate.limit,
        restore_rate=worst.rate.per_second,
        backend=BACKEND_LOCAL,
    )


# aiolimiter has no public API for "how full is it" or "how long until N units fit", so these two
# read its internal leaky-bucket state (`_level`, `_rate_per_sec`, refreshed by has_capacity()).
# tests/test_ratelimit.py checks the resulting numbers, so an aiolimiter change that breaks this
# shows up there.
def _local_level(limiter: AsyncLimiter) -> float:
    return float(limiter._level)


def _local_wait_s(limiter: AsyncLimiter, cost: int) -> float:
    excess = _local_level(limiter) + cost - limiter.max_rate
    return max(0.0, excess / float(limiter._rate_per_sec))


def _local_denial(buckets: Sequence[Bucket], limiters: Sequence[AsyncLimiter], cost: int) -> Decision | None:
    """A denial if any local limiter lacks room for ``cost``, else None. Charges nothing."""
    worst: tuple[float, Bucket] | None = None
    for bucket, limiter in zip(buckets, limiters, strict=True):
        if limiter.has_capacity(cost):
            continue
        wait = _local_wait_s(limiter, cost)
        if worst is None or wait > worst[0]:
            worst = (wait, bucket)
    if worst is None:
        return None
    wait, bucket = worst
    return Decision(
        allowed=False,
        retry_after_s=wait,
        remaining=0,
        limit=bucket.rate.limit,
        restore_rate=bucket.rate.per_second,
        backend=BACKEND_LOCAL,
    )


async def _charge_local(limiters: Sequence[AsyncLimiter], cost: int) -> None:
    for limiter in limiters:
        # acquire() only suspends when it has to wait for capacity, so guarded by has_capacity()
        # it returns at once and the loop runs without yielding to other requests. A limiter can
        # lack room here only when Redis allowed a charge that this replica's own limiter (which
        # runs on a different clock) considers over; it is then already full, and we leave it so.
        if limiter.has_capacity(cost):
            await limiter.acquire(cost)


def _local_allowed(buckets: Sequence[Bucket], limiters: Sequence[AsyncLimiter]) -> Decision:
    """The decision for a charge just made locally: describes the bucket with the fewest units left."""
    remaining = [max(0, math.floor(lim.max_rate - _local_level(lim) + _EPSILON)) for lim in limiters]
    tightest = min(range(len(buckets)), key=remaining.__getitem__)
    rate = buckets[tightest].rate
    return Decision(
        allowed=True,
        retry_after_s=0.0,
        remaining=remaining[tightest],
        limit=rate.limit,
        restore_rate=rate.per_second,
        backend=BACKEND_LOCAL,
    )


def _parse_redis_reply(raw: object, buckets: Sequence[Bucket]) -> Decision:
    if not isinstance(raw, list) or len(raw) != 4:
        raise ValueError(f"unexpected rate limit script reply of type {type(raw).__name__}")
    allowed = int(raw[0]) == 1
    retry_after_s = float(raw[1]) / 1000.0
    rate = buckets[int(raw[3]) - 1].rate
    return Decision(
        allowed=allowed,
        retry_after_s=0.0 if allowed else retry_after_s,
        remaining=int(raw[2]) if allowed else 0,
        limit=rate.limit,
        restore_rate=rate.per_second,
        backend=BACKEND_REDIS,
    )
