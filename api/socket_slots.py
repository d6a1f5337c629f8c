"""The websocket cap per principal, shared by every replica.

Each open socket holds one member of a Redis sorted set per principal, scored by when it expires.
A replica refreshes its members every `heartbeat_s`; a replica that crashes stops refreshing, so
its slots expire after `ttl_s` instead of leaking. Acquiring is one Lua script (drop expired
members, count, add if under the cap), timed by the Redis server's clock so replicas agree.

While Redis is down the cap is counted per replica, as before, and every socket is counted locally
too so that the fallback knows what this replica holds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from typing import Any

from api.redis_link import RedisLink

log = logging.getLogger("ragql.auth")

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"""

_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) * 2)
end
return 1
"""


class SocketSlots:
    def __init__(
        self,
        link: RedisLink | None,
        cap: int,
        *,
        ttl_s: float = 30.0,
        heartbeat_s: float = 10.0,
        prefix: str = "ragql:ws:",
    ) -> None:
        self.link = link
        self.cap = cap
        self.ttl_ms = int(ttl_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.prefix = prefix
        self.local: Counter[str] = Counter()
        self._shared: dict[str, str] = {}  # slot id -> principal key, for slots held in Redis
        self._task: asyncio.Task[None] | None = None
        self._acquire = link.client.register_script(_ACQUIRE) if link else None
        self._refresh = link.client.register_script(_REFRESH) if link else None

    async def acquire(self, principal: str) -> str | None:
        """A slot id, or None when the principal already holds `cap` sockets (on all replicas)."""
        slot = uuid.uuid4().hex
        if self.link is not None and self._acquire is not None:
            script = self._acquire
            ok, got = await self.link.call(
                "websockets", lambda r: script(keys=[self.prefix + principal], args=[self.cap, self.ttl_ms, slot])
            )
            if ok:
                if not got:
                    return None
                self._shared[slot] = principal
                self.local[principal] += 1
                return slot
        if self.local[principal] >= self.cap:
            return None
        self.local[principal] += 1
        return slot

    async def release(self, principal: str, slot: str) -> None:
        self.local[principal] -= 1
        if self.local[principal] <= 0:
            del self.local[principal]
        if self._shared.pop(slot, None) is not None and self.link is not None:
            await self.link.call("websockets", lambda r: r.zrem(self.prefix + principal, slot))

    def start(self) -> None:
        if self.link is not None and self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="ragql-websocket-slots")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _heartbeat(self) -> None:
        assert self.link is not None and self._refresh is not None
        script = self._refresh
        while True:
            await asyncio.sleep(self.heartbeat_s)
            held = list(self._shared.items())
            if not held:
                continue
            await self.link.call("websockets", _refresher(script, held, self.prefix, self.ttl_ms))


def _refresher(script: Any, held: list[tuple[str, str]], prefix: str, ttl_ms: int) -> Any:
    keys = [prefix + principal for _, principal in held]
    args: list[int | str] = [ttl_ms, *[slot for slot, _ in held]]
    return lambda _redis: script(keys=keys, args=args)
