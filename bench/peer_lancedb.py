"""One round of the `peer_lancedb` ratio: LanceDB's in-process hybrid search on SciFact.

`python -m bench.peer_lancedb SPEC.json` (run by bench/scenarios.py, with lancedb importable: the
`bench` optional dependencies, or `.bench-deps/`). The table holds ragql's own SciFact chunks and
their stored int8-MiniLM vectors, read once from the bench store and cached under the eval's data
dir; an FTS index covers the text. Each query is timed from its text: the query embedding (the same
ragql embedder the server uses, fresh texts, so never cached), then `search(query_type="hybrid")`
with LanceDB's default RRF fusion, 10 results. Prints one JSON line with the p50."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile

TABLE = "scifact_chunks"


async def _chunks(url: str) -> list[dict[str, Any]]:
    import asyncpg
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(url)
    try:
        await register_vector(conn)
        rows = await conn.fetch("SELECT id, document_id, text, embedding FROM chunks WHERE tenant_id = 'default'")
    finally:
        await conn.close()
    return [
        {
            "id": str(r["id"]),
            "document_id": str(r["document_id"]),
            "text": r["text"],
            "vector": r["embedding"].to_list(),
        }
        for r in rows
    ]


def _table(url: str, table_dir: Path) -> Any:
    import lancedb

    db = lancedb.connect(str(table_dir))
    if TABLE in db.list_tables().tables:
        return db.open_table(TABLE)
    table = db.create_table(TABLE, data=asyncio.run(_chunks(url)))
    table.create_fts_index("text")
    return table


def main() -> None:
    from api.bootstrap import build_embedder
    from api.settings import Settings

    spec = json.loads(Path(sys.argv[1]).read_text())
    table = _table(spec["url"], Path(spec["table_dir"]))
    embedder = build_embedder(Settings())

    async def one(q: str) -> float:
        t0 = time.perf_counter()
        vector = await embedder.embed_query(q)
        table.search(query_type="hybrid").vector(vector.tolist()).text(q).limit(10).to_list()
        return (time.perf_counter() - t0) * 1000

    async def run() -> list[float]:
        await one("warm up the model and the table")
        return [await one(q) for q in spec["queries"]]

    took = asyncio.run(run())
    print(json.dumps({"p50_ms": percentile(took, 50), "p95_ms": percentile(took, 95), "n": len(took)}))


if __name__ == "__main__":
    main()
