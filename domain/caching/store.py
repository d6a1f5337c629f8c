"""Where ragql's caches keep their entries: one small async key-value Protocol with two
implementations. `LocalStore` (here) is one process's memory, for a single replica or when no
Redis is configured. The api layer's Redis store (api/shared_cache.py) is shared by every replica.

Besides entries, a store keeps *versions*: one counter per scope (a tenant's index), bumped on every
write. Cache keys include the version, so after a write every replica's old entries just stop
matching; nothing has to be found and deleted.

A store never raises. `version()` answers None when it cannot tell (Redis unreachable): callers
then skip the cache, since an entry read without knowing the current version could be stale.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


class CacheStore(Protocol):
    @property
    def backend(self) -> str: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def version(self, scope: str) -> int | None: ...

    async def bump(self, scope: str) -> None: ...


class LocalStore:
    """A bounded in-process LRU with per-entry expiry: correct for one replica only."""

    backend = "local"

    def __init__(self, *, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._versions: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def version(self, scope: str) -> int | None:
        return self._versions.get(scope, 0)

    async def bump(self, scope: str) -> None:
        self._versions[scope] = self._versions.get(scope, 0) + 1
