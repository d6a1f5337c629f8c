"""The BM25 k1/b lever: rebuild the eval store's index with each setting and store the keyword
leg's per-chunk results for both splits (bench/tuning.py fuses them offline). The index is put
back to the defaults afterwards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from domain.persistence.database import Database
from domain.retrieval.search import build_sql
from domain.retrieval.tenant_index import chunk_partition, keyword_index

GRID = [(k1, b) for k1 in (0.9, 1.2, 1.6) for b in (0.5, 0.75, 0.9)]
DEFAULT = (1.2, 0.75)


async def _rebuild(db: Database, k1: float, b: float) -> None:
    async with db.engine.begin() as conn:
        # The eval tenant's own partition index (migration 0005); names are derived hex.
        index, partition = keyword_index("default"), chunk_partition("default")
        await conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
        await conn.execute(
            text(
                f"CREATE INDEX {index} ON {partition} USING bm25 (search_text) "
                f"WITH (text_config = 'english', k1 = {float(k1)}, b = {float(b)})"
            )
        )


async def sweep_bm25(db: Database, splits: dict[str, list[tuple[str, str]]], ext: dict[Any, str], out: Path) -> None:
    sql = text(build_sql("KEYWORD", "bm25", "", "default"))
    try:
        for k1, b in GRID:
            path = out / f"keyword-k{k1}-b{b}.json"
            if await asyncio.to_thread(path.exists):
                continue
            await _rebuild(db, k1, b)
            legs: dict[str, dict[str, list[list[Any]]]] = {}
            for split, queries in splits.items():
                legs[split] = {}
                for qid, query in queries:
                    async with db.session("default") as s:
                        rows = (await s.execute(sql, {"tenant": "default", "k": 200, "qt": query})).all()
                    legs[split][qid] = [[ext[r[2]], float(r[3])] for r in rows if r[3] > 0]
            await asyncio.to_thread(path.write_text, json.dumps(legs))
            print(f"bm25 k1={k1} b={b}: stored", flush=True)
    finally:
        await _rebuild(db, *DEFAULT)
