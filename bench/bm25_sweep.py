"""The BM25 k1/b lever: one bench-only copy of the eval tenant's chunks per setting (schema
`bench_levers`, the chunks' own search_text, so the same statistics), each with a BM25 index built
with that k1 and b; the keyword leg's per-chunk results for both splits are stored for
bench/tuning.py. The served partition and its index are never touched: since migration 0005 the
partition's index belongs to the parent `chunks_bm25_idx` and cannot be dropped on its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import text
from tqdm import tqdm

from domain.persistence.database import Database
from domain.retrieval.tenant_index import chunk_partition

GRID = [(k1, b) for k1 in (0.9, 1.2, 1.6) for b in (0.5, 0.75, 0.9)]
DEFAULT = (1.2, 0.75)


def _table(k1: float, b: float) -> str:
    return f"bench_levers.chunks_k{int(k1 * 10)}_b{int(b * 100)}"


async def _build(db: Database, k1: float, b: float) -> str:
    table = _table(k1, b)
    index = table.split(".")[1] + "_bm25"
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_levers"))
        if not (await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})).scalar_one():
            await conn.execute(
                text(
                    f"CREATE TABLE {table} AS SELECT d.external_id AS doc, c.search_text AS body "  # noqa: S608
                    f"FROM {chunk_partition('default')} c JOIN documents d ON d.id = c.document_id"
                )
            )
            await conn.execute(
                text(
                    f"CREATE INDEX {index} ON {table} USING bm25 (body) "
                    f"WITH (text_config = 'english', k1 = {float(k1)}, b = {float(b)})"
                )
            )
    return f"bench_levers.{index}"


async def sweep_bm25(db: Database, splits: dict[str, list[tuple[str, str]]], out: Path) -> None:
    for k1, b in GRID:
        path = out / f"keyword-k{k1}-b{b}.json"
        if await asyncio.to_thread(path.exists):
            continue
        index = await _build(db, k1, b)
        score = f"(body <@> to_bm25query(:qt, '{index}'))"
        sql = text(f"SELECT doc, -{score} FROM {_table(k1, b)} ORDER BY {score} LIMIT 200")  # noqa: S608
        legs: dict[str, dict[str, list[list[object]]]] = {}
        for split, queries in splits.items():
            legs[split] = {}
            for qid, query in tqdm(queries, desc=f"bm25 k1={k1} b={b} {split}", unit="query"):
                async with db.engine.connect() as conn:
                    rows = (await conn.execute(sql, {"qt": query})).all()
                legs[split][qid] = [[d, float(s)] for d, s in rows if s > 0]
        await asyncio.to_thread(path.write_text, json.dumps(legs))
        print(f"bm25 k1={k1} b={b}: stored", flush=True)
