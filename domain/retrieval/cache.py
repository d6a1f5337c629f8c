"""Fused search results, cached per tenant in a CacheStore (Redis shared by all replicas, or this
process's memory).

The key starts with the tenant and its index version, then a digest of everything that shapes
the fused list (query text, mode, fusion, alpha, depth, filter, pool, keyword backend). Ingest and
delete bump the tenant's version (Documents), so after a write no replica can find the old
entries: B searches right after A ingests and sees the new document. When the store cannot say
what the version is (Redis down), the cache is skipped: no result, rather than a stale one.

What is cached is the fused list before re-ranking and logging, as plain JSON (document ids,
chunk text and scores, never Python objects): every search still gets its own `queryId` and
query-log row, re-ranking still runs per request, and the documents are read fresh.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from domain import telemetry
from domain.caching.store import CacheStore, LocalStore


def index_scope(tenant_id: str) -> str:
    return f"index:{tenant_id}"


@dataclass(frozen=True)
class CachedHit:
    document_id: uuid.UUID
    chunk_id: uuid.UUID
    chunk_text: str
    chunk_ordinal: int
    snippet: str
    score: float
    dense: float | None
    keyword: float | None
    fused: float
    dense_rank: int | None
    keyword_rank: int | None
    fused_rank: int

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["document_id"], out["chunk_id"] = str(self.document_id), str(self.chunk_id)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CachedHit:
        return cls(**{**raw, "document_id": uuid.UUID(raw["document_id"]), "chunk_id": uuid.UUID(raw["chunk_id"])})


class SearchCache:
    def __init__(self, store: CacheStore | None = None, *, ttl_s: float = 15.0) -> None:
        self.store: CacheStore = store if store is not None else LocalStore()
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    async def key(self, tenant_id: str, *parts: Any) -> str | None:
        """The entry's key at the tenant's current index version; None when the version is unknown."""
        if not self.enabled:
            return None
        version = await self.store.version(index_scope(tenant_id))
        if version is None:
            return None
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
        return f"search:{tenant_id}:{version}:{digest}"

    async def get(self, key: str) -> tuple[list[CachedHit], int] | None:
        raw = await self.store.get(key)
        if raw is None:
            self.misses += 1
            telemetry.cache_lookup("search", False)
            return None
        try:
            body = json.loads(raw)
            entry = [CachedHit.from_json(h) for h in body["hits"]], int(body["total"])
        except (ValueError, KeyError, TypeError):
            self.misses += 1  # written by an incompatible version: recompute
            telemetry.cache_lookup("search", False)
            return None
        self.hits += 1
        telemetry.cache_lookup("search", True)
        return entry

    async def put(self, key: str, hits: list[CachedHit], total: int) -> None:
        body = json.dumps({"hits": [h.to_json() for h in hits], "total": total})
        await self.store.set(key, body.encode(), self.ttl_s)

    async def invalidate(self, tenant_id: str) -> None:
        await self.store.bump(index_scope(tenant_id))
