"""A short-lived cache of fused search results, per tenant.

Repeated searches (a popular query, a user paging back, a page re-rendering) skip both retrieval
legs. The key always starts with the tenant, so one tenant's results can never answer another's
query, whatever the query text. Writes to a tenant (ingest, delete) drop that tenant's entries
in this process at once; other replicas see the change when their entries expire (`ttl_s`).

What is cached is the fused list before re-ranking and logging: every search still gets its own
`queryId` and query-log row, and re-ranking still runs per request.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from domain.retrieval.search import Hit

CacheKey = tuple[Any, ...]


class SearchCache:
    def __init__(self, *, ttl_s: float = 15.0, max_entries: int = 2048) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, tuple[float, list[Hit], int]] = OrderedDict()
        # Bumped on every write to a tenant; part of the key, so old entries just stop matching.
        self._generation: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def key(self, tenant_id: str, *parts: Any) -> CacheKey:
        return (tenant_id, self._generation.get(tenant_id, 0), *parts)

    def get(self, key: CacheKey) -> tuple[list[Hit], int] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        # Copies: re-ranking annotates hits in place, and a cached hit must stay as it was fused.
        return [dataclasses.replace(h) for h in entry[1]], entry[2]

    def put(self, key: CacheKey, hits: list[Hit], total: int) -> None:
        if not self.enabled:
            return
        self._entries[key] = (time.monotonic() + self.ttl_s, [dataclasses.replace(h) for h in hits], total)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, tenant_id: str) -> None:
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
