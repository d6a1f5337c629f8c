"""Fused search results, cached per tenant in a CacheStore (Redis shared by all replicas, or this
process's memory).

The key starts with the tenant and its index version, then a digest of everything that shapes
the fused list (query text, mode, fusion, alpha, depth, filter, pool, keyword backend). Ingest and
delete bump the tenant's version (Documents), so after a write no replica can find the old
entries: B searches right after A ingests and sees the new document. When the store cannot say
what the version is (Redis down), the cache is skipped: no result, rather than a stale one.

What is cached is the fused list before re-ranking and logging, as plain JSON (document ids,
chunk text and scores, never Python objects): every search still gets its own `queryId` and
query-log row, and re-ranking still runs per request.

The documents themselves never go to the store (Redis). A replica that reads an entry from the
store reads its documents in the tenant's transaction (RLS applies), and then keeps the entry and
those documents in its own memory, under the same key (`Resident`): the next hit on that key in
this process needs no database at all. The key holds the tenant's index version, so a write
makes these unreachable exactly as it does the store's entries; they expire with them too.

`observing()` lets a caller see which lookups served the searches it runs (a resident entry, or
the store / a miss): the api layer replays a whole response only for an operation that one
resident entry answered, and `serves()` tells it whether that entry is still the current one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from domain import telemetry
from domain.caching.store import CacheStore, LocalStore
from domain.persistence.tables import Document

# This process's resident entries (fused list and documents) are bounded by count and by an
# estimate of their text's size: a tenant's documents can be long.
RESIDENT_ENTRIES = 1024
RESIDENT_CHARS = 32 * 1024 * 1024


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


@dataclass(frozen=True)
class Resident:
    """An entry as this process holds it: the fused list and its documents, read in the tenant's
    transaction when the entry was written or first read here. Shared by every hit on its key, so
    never mutated (a search builds its own hits from it)."""

    hits: tuple[CachedHit, ...]
    total: int
    documents: Mapping[uuid.UUID, Document]
    expires_at: float
    chars: int
    # Per hit whose document is held, a search hit's fields (the document in place of its id),
    # built once here: a repeated search builds its hits from these, not field by field.
    hit_fields: tuple[Mapping[str, Any], ...] = ()


# (key, entry) per lookup made in the observing context: entry None for one that went to the
# store (a hit there or a miss). None when nobody observes.
_lookups: ContextVar[list[tuple[str, Resident | None]] | None] = ContextVar("search_cache_lookups", default=None)


@contextmanager
def observing() -> Iterator[list[tuple[str, Resident | None]]]:
    """The lookups this context's searches make, in order, while the block runs."""
    seen: list[tuple[str, Resident | None]] = []
    token = _lookups.set(seen)
    try:
        yield seen
    finally:
        _lookups.reset(token)


def _note(key: str, entry: Resident | None) -> None:
    seen = _lookups.get()
    if seen is not None:
        seen.append((key, entry))


def _chars(hits: tuple[CachedHit, ...], documents: Mapping[uuid.UUID, Document]) -> int:
    text = sum(len(h.chunk_text) + len(h.snippet) for h in hits)
    return text + sum(len(d.text or "") + len(d.title or "") + 256 for d in documents.values())


class SearchCache:
    def __init__(
        self,
        store: CacheStore | None = None,
        *,
        ttl_s: float = 15.0,
        resident_entries: int = RESIDENT_ENTRIES,
        resident_chars: int = RESIDENT_CHARS,
    ) -> None:
        self.store: CacheStore = store if store is not None else LocalStore()
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0
        self.resident_entries = resident_entries
        self.resident_chars = resident_chars
        self._resident: OrderedDict[str, Resident] = OrderedDict()
        self._resident_chars = 0

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
        _note(key, None)
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

    def resident(self, key: str) -> Resident | None:
        """This process's copy of the entry at `key` (a hit, counted), or None."""
        entry = self._resident.get(key)
        if entry is None:
            return None
        if entry.expires_at < time.monotonic():
            self._forget(key)
            return None
        self._resident.move_to_end(key)
        self.hits += 1
        telemetry.cache_lookup("search", True)
        _note(key, entry)
        return entry

    async def serves(self, tenant_id: str, key: str, entry: Resident, *, margin_s: float = 1.0) -> bool:
        """Whether a search of `tenant_id` would be answered now by `entry` at `key`: the key is at
        the tenant's current index version, and this process still holds that very entry, with at
        least `margin_s` left before it expires. Counts no hit (the search that follows does)."""
        if not self.enabled or self._resident.get(key) is not entry:
            return False
        if entry.expires_at < time.monotonic() + margin_s:
            return False
        version = await self.store.version(index_scope(tenant_id))
        return version is not None and key.startswith(f"search:{tenant_id}:{version}:")

    def keep(self, key: str, hits: list[CachedHit], total: int, documents: Mapping[uuid.UUID, Document]) -> None:
        """Hold the entry at `key` with its documents in this process until the store's TTL."""
        if not self.enabled or self.resident_entries <= 0:
            return
        frozen = tuple(hits)
        docs = {h.document_id: documents[h.document_id] for h in frozen if h.document_id in documents}
        fields = tuple(
            {"document": docs[h.document_id], **{k: v for k, v in h.__dict__.items() if k != "document_id"}}
            for h in frozen
            if h.document_id in docs
        )
        entry = Resident(frozen, total, docs, time.monotonic() + self.ttl_s, _chars(frozen, docs), fields)
        if entry.chars > self.resident_chars:
            return
        self._forget(key)
        self._resident[key] = entry
        self._resident_chars += entry.chars
        while len(self._resident) > self.resident_entries or self._resident_chars > self.resident_chars:
            self._forget(next(iter(self._resident)))

    def _forget(self, key: str) -> None:
        entry = self._resident.pop(key, None)
        if entry is not None:
            self._resident_chars -= entry.chars

    async def invalidate(self, tenant_id: str) -> None:
        await self.store.bump(index_scope(tenant_id))
        # Unreachable already (the version moved); dropped now so they stop holding memory.
        prefix = f"search:{tenant_id}:"
        for key in [k for k in self._resident if k.startswith(prefix)]:
            self._forget(key)
