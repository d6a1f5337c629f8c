"""The Redis CacheStore (domain/caching/store.py): entries and index versions shared by every
replica. A Redis failure reads as a miss (get), a skipped write (set), or an unknown version
(None: callers skip the cache rather than risk a stale entry).

A bump that fails is remembered and replayed when Redis answers again, so the versions still move
past any entry written before the write that this replica could not announce.
"""

from __future__ import annotations

from api.redis_link import RedisLink


class RedisStore:
    backend = "redis"

    def __init__(self, link: RedisLink, *, prefix: str = "ragql:cache:") -> None:
        self.link = link
        self.prefix = prefix
        self._pending_bumps: set[str] = set()
        link.on_recovery(self._replay_bumps)

    async def get(self, key: str) -> bytes | None:
        ok, value = await self.link.call("cache", lambda r: r.get(self.prefix + key))
        return value if ok and isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        await self.link.call("cache", lambda r: r.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000))))

    async def version(self, scope: str) -> int | None:
        ok, value = await self.link.call("cache", lambda r: r.get(self.prefix + "v:" + scope))
        if not ok or self._pending_bumps:
            return None  # unknown, or a write here is not announced yet: no entry can be trusted
        return int(value) if value is not None else 0

    async def bump(self, scope: str) -> None:
        ok, _ = await self.link.call("cache", lambda r: r.incr(self.prefix + "v:" + scope))
        if not ok:
            self._pending_bumps.add(scope)

    async def _replay_bumps(self) -> None:
        pending, self._pending_bumps = self._pending_bumps, set()
        for scope in pending:
            await self.bump(scope)
