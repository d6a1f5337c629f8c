"""api/ratelimit.py against real redis-servers started by tests/redis_fixture.py.

A "replica" is one RateLimiter with its own Redis client, as one API process would have. Several
tests use a second, fresh replica so that the decision comes from Redis (the shared limit) rather
than from the first replica's own local limiters.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from api.ratelimit import Bucket, Decision, Rate, RateLimiter, redis_client
from api.redis_health import short_error
from tests.redis_fixture import private_redis

LOGGER = "ragql.ratelimit"
# Wall time passes between a charge and the check that reads it back; waits computed by the
# limiter may therefore be a little below the ideal value, never above it.
SLACK_S = 1.0
# Client timeout for tests. The production default (0.25 s) can be missed on a busy test machine
# when many connections open at once, and that (by design) turns a decision into a local
# fallback, which would make the Redis tests flaky. The outage tests kill the server outright, so
# their failures are immediate "connection refused" and don't depend on this value.
TIMEOUT_S = 5.0

MakeReplica = Callable[[], RateLimiter]


def bucket(limit: int, period_s: float, name: str = "b") -> Bucket:
    """A bucket with a key unique to this call, so tests sharing the session Redis never collide."""
    return Bucket(f"{name}:{uuid.uuid4().hex}", Rate(limit, period_s))


async def run(limiter: RateLimiter, buckets: list[Bucket], times: int, cost: int = 1) -> list[Decision]:
    return [await limiter.check(buckets, cost) for _ in range(times)]


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[MakeReplica]:
    made: list[RateLimiter] = []

    def make() -> RateLimiter:
        limiter = RateLimiter(redis_client(redis_url, timeout_s=TIMEOUT_S))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


# --- 1. local only ---------------------------------------------------------------------------


async def test_local_only_allows_limit_then_denies_with_retry_after_and_charges_nothing() -> None:
    limiter = RateLimiter(None)
    assert limiter.backend == "local"
    b = bucket(5, 60)

    allowed = await run(limiter, [b], 5)
    assert [d.allowed for d in allowed] == [True] * 5
    assert [d.remaining for d in allowed] == [4, 3, 2, 1, 0]
    assert all(d.backend == "local" and d.limit == 5 and d.restore_rate == pytest.approx(5 / 60) for d in allowed)

    # The retry-after here comes from aiolimiter's internal level/rate (see _local_wait_s).
    denied = await limiter.check([b])
    assert not denied.allowed
    assert denied.remaining == 0
    assert 12.0 - SLACK_S < denied.retry_after_s <= 12.0

    # A denied check charged nothing: had it charged, the wait would now be about 24 s.
    again = await limiter.check([b])
    assert not again.allowed
    assert 12.0 - SLACK_S < again.retry_after_s <= 12.0


async def test_local_only_is_all_or_nothing() -> None:
    limiter = RateLimiter(None)
    full, fresh = bucket(1, 60, "full"), bucket(5, 60, "fresh")
    assert (await limiter.check([full])).allowed

    denied = await limiter.check([fresh, full])
    assert not denied.allowed
    assert denied.limit == 1  # describes the bucket that denied

    # `fresh` was not charged by the denied check: all 5 units are still there.
    assert (await limiter.check([fresh])).remaining == 4


# --- 2. Redis --------------------------------------------------------------------------------


async def test_redis_allows_limit_then_denies(replicas: MakeReplica) -> None:
    first, second = replicas(), replicas()
    b = bucket(5, 60)

    allowed = await run(first, [b], 5)
    assert [d.allowed for d in allowed] == [True] * 5
    assert [d.remaining for d in allowed] == [4, 3, 2, 1, 0]
    assert all(d.backend == "redis" for d in allowed)
    assert first.backend == "redis"

    # The same replica is stopped by its local first line, without asking Redis.
    local_denial = await first.check([b])
    assert not local_denial.allowed and local_denial.backend == "local"
    assert 0 < local_denial.retry_after_s <= 12.0

    # A fresh replica has local room, so Redis (the shared limit) denies it.
    shared_denial = await second.check([b])
    assert not shared_denial.allowed
    assert shared_denial.backend == "redis"
    assert shared_denial.remaining == 0
    assert 12.0 - SLACK_S < shared_denial.retry_after_s <= 12.01
    assert second.backend == "redis"


# --- 3. shared across replicas ---------------------------------------------------------------


async def test_limit_is_shared_across_replicas(replicas: MakeReplica) -> None:
    one, two = replicas(), replicas()
    b = bucket(10, 60)

    decisions: list[Decision] = []
    for _ in range(6):
        decisions.append(await one.check([b]))
        decisions.append(await two.check([b]))

    assert sum(d.allowed for d in decisions) == 10
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    # The denials came from Redis: each replica had charged only 5 of its own local 10.
    assert all(d.backend == "redis" for d in decisions)


# --- 4. all-or-nothing -----------------------------------------------------------------------


async def test_redis_multi_bucket_charge_is_all_or_nothing(replicas: MakeReplica) -> None:
    one, two = replicas(), replicas()
    a, b = bucket(100, 60, "a"), bucket(2, 60, "b")

    first = await one.check([a, b])
    assert first.allowed and first.limit == 2 and first.remaining == 1  # the tightest bucket
    assert (await one.check([a, b])).allowed

    local_denial = await one.check([a, b])  # denied by replica one's local limiter for b
    assert not local_denial.allowed and local_denial.backend == "local" and local_denial.limit == 2
    shared_denial = await two.check([a, b])  # denied inside the Lua script because of b
    assert not shared_denial.allowed and shared_denial.backend == "redis" and shared_denial.limit == 2

    # Neither denial charged a: after two charges, this third one leaves 97.
    alone = await two.check([a])
    assert alone.allowed and alone.backend == "redis"
    assert alone.remaining == 97


# --- 5. cost ---------------------------------------------------------------------------------


async def test_cost_charges_that_many_units_local() -> None:
    limiter = RateLimiter(None)
    b = bucket(10, 60)
    assert (await limiter.check([b], cost=4)).remaining == 6
    assert (await limiter.check([b], cost=4)).remaining == 2

    denied = await limiter.check([b], cost=4)
    assert not denied.allowed
    assert 12.0 - SLACK_S < denied.retry_after_s <= 12.0  # 2 more units at 6 s each

    assert (await limiter.check([b], cost=2)).remaining == 0


async def test_cost_charges_that_many_units_redis(replicas: MakeReplica) -> None:
    one, two = replicas(), replicas()
    b = bucket(10, 60)
    assert (await one.check([b], cost=4)).remaining == 6
    assert (await one.check([b], cost=4)).remaining == 2

    denied = await two.check([b], cost=4)
    assert not denied.allowed and denied.backend == "redis"
    assert 12.0 - SLACK_S < denied.retry_after_s <= 12.01

    last = await two.check([b], cost=2)
    assert last.allowed and last.backend == "redis" and last.remaining == 0


@pytest.mark.parametrize("use_redis", [False, True], ids=["local", "redis"])
async def test_cost_above_limit_never_fits(use_redis: bool, replicas: MakeReplica) -> None:
    limiter = replicas() if use_redis else RateLimiter(None)
    b = bucket(10, 60)

    denied = await limiter.check([b], cost=11)
    assert not denied.allowed
    assert denied.retry_after_s == 60.0
    assert denied.remaining == 0 and denied.limit == 10

    # Nothing was charged: the whole limit is still available.
    assert (await limiter.check([b], cost=10)).remaining == 0


# --- 6. units come back ----------------------------------------------------------------------


async def test_units_come_back_local() -> None:
    limiter = RateLimiter(None)
    b = bucket(2, 0.4)  # one unit back every 0.2 s
    assert all(d.allowed for d in await run(limiter, [b], 2))
    assert not (await limiter.check([b])).allowed

    await asyncio.sleep(0.3)
    assert (await limiter.check([b])).allowed


async def test_units_come_back_redis(replicas: MakeReplica) -> None:
    one, two = replicas(), replicas()
    await two.check([bucket(1, 1)])  # connect now, so the denial below is one round trip away
    b = bucket(2, 1.0)  # one unit back every 0.5 s
    assert all(d.allowed for d in await run(one, [b], 2))
    denied = await two.check([b])
    assert not denied.allowed and denied.backend == "redis"
    assert 0 < denied.retry_after_s <= 0.5 + 0.001

    await asyncio.sleep(0.6)
    again = await two.check([b])
    assert again.allowed and again.backend == "redis"


# --- 7, 8. Redis outage and recovery ---------------------------------------------------------


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_outage_falls_back_to_local_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    password = "s3cret-pass"
    with private_redis(password=password) as server:
        assert password in server.url
        # retry_redis_after_s=0: every check tries Redis again, so each one below meets the outage.
        quiet = RateLimiter(redis_client(server.url, timeout_s=TIMEOUT_S), retry_redis_after_s=0.0, log_every_s=60.0)
        # failures_to_trip=1: down at the first failure, so each failed call below is a warning.
        chatty = RateLimiter(
            redis_client(server.url, timeout_s=TIMEOUT_S), retry_redis_after_s=0.0, log_every_s=0.0, failures_to_trip=1
        )
        try:
            assert (await quiet.check([bucket(3, 60)])).backend == "redis"
            assert (await chatty.check([bucket(3, 60)])).backend == "redis"
            server.kill()

            b = bucket(3, 60)
            during = await run(quiet, [b], 4)
            assert [d.allowed for d in during] == [True, True, True, False]
            assert all(d.backend == "local" for d in during)
            assert quiet.backend.startswith("local (redis unreachable: ")
            for _ in range(3):
                assert (await quiet.check([bucket(3, 60)])).allowed

            quiet_warnings = _records(caplog, logging.WARNING)
            assert len(quiet_warnings) == 1  # six failed Redis attempts, one warning
            assert "per replica" in quiet_warnings[0].getMessage()

            # Control: without throttling, the same kind of calls log every time, so the single
            # warning above is the throttle at work, not a lack of Redis attempts.
            for _ in range(3):
                assert (await chatty.check([bucket(3, 60)])).allowed
            assert len(_records(caplog, logging.WARNING)) == 1 + 3
        finally:
            await quiet.aclose()
            await chatty.aclose()

    for record in caplog.records:
        text = record.getMessage()
        assert password not in text
        assert "redis://" not in text


async def test_redis_is_skipped_during_the_outage_window() -> None:
    with private_redis() as server:
        limiter = RateLimiter(redis_client(server.url, timeout_s=TIMEOUT_S), retry_redis_after_s=60.0)
        try:
            server.kill()
            for _ in range(3):  # three failures in a row: Redis is considered down
                assert (await limiter.check([bucket(3, 60)])).backend == "local"
            server.start()  # back up, but inside the 60 s window nobody asks it
            assert (await limiter.check([bucket(3, 60)])).backend == "local"
            assert limiter.backend.startswith("local (redis unreachable: ")
        finally:
            await limiter.aclose()


async def test_recovers_when_redis_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with private_redis() as server:
        limiter = RateLimiter(redis_client(server.url, timeout_s=TIMEOUT_S), retry_redis_after_s=0.2)
        try:
            assert (await limiter.check([bucket(3, 60)])).backend == "redis"
            server.kill()
            for _ in range(3):
                assert (await limiter.check([bucket(3, 60)])).backend == "local"
            assert limiter.backend.startswith("local")

            server.start()  # same port
            await asyncio.sleep(0.3)  # past the outage window
            back = await limiter.check([bucket(3, 60)])
            assert back.allowed and back.backend == "redis"
            assert limiter.backend == "redis"
            assert any("reachable again" in r.getMessage() for r in _records(caplog, logging.INFO))
        finally:
            await limiter.aclose()


# --- 9. concurrency --------------------------------------------------------------------------


async def test_concurrent_checks_on_one_replica(replicas: MakeReplica) -> None:
    limiter = replicas()
    b = bucket(20, 60)
    decisions = await asyncio.gather(*(limiter.check([b]) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 20
    # Redis agrees that the bucket is full.
    assert not (await replicas().check([b])).allowed


async def test_concurrent_checks_across_replicas(replicas: MakeReplica) -> None:
    # Ten attempts per replica stay under each local limit of 20, so only Redis can stop them.
    fleet = [replicas() for _ in range(5)]
    b = bucket(20, 60)
    decisions = await asyncio.gather(*(fleet[i % 5].check([b]) for i in range(50)))
    assert sum(d.allowed for d in decisions) == 20
    assert all(d.backend == "redis" for d in decisions)


# --- details ---------------------------------------------------------------------------------


async def test_local_limiters_are_a_bounded_lru() -> None:
    limiter = RateLimiter(None, max_local_keys=3)
    buckets = [bucket(5, 60) for _ in range(5)]
    for b in buckets:
        await limiter.check([b])
    await limiter.check([buckets[2]])  # touch: now the most recently used
    await limiter.check([bucket(5, 60)])
    assert list(limiter._local) == [buckets[4].key, buckets[2].key, list(limiter._local)[-1]]
    assert len(limiter._local) == 3


async def test_rejects_invalid_input() -> None:
    limiter = RateLimiter(None)
    with pytest.raises(ValueError):
        await limiter.check([])
    with pytest.raises(ValueError):
        await limiter.check([bucket(5, 60)], cost=0)
    b = bucket(5, 60)
    with pytest.raises(ValueError):
        await limiter.check([b, b])
    with pytest.raises(ValueError):
        Rate(0, 60)
    with pytest.raises(ValueError):
        Rate(5, 0)


def test_error_text_is_scrubbed_of_url_credentials() -> None:
    text = short_error(ConnectionError("cannot reach redis://:s3cret-pass@10.0.0.1:6379/0"))
    assert "s3cret-pass" not in text
    assert "10.0.0.1:6379" in text
