"""Dense-side levers of issue 17, stored as extra legs for offline tuning (bench/tuning_dense.py):

- `exact`: the chunk leg by exact cosine over every chunk vector of the store, against the served
  HNSW index (`hnsw.ef_search` 100): how much the index loses;
- `doc`: one vector per whole document (title + abstract, cut at the model's 256 word pieces), the
  other end of the chunk-size range from the served 200-piece chunks.

Exact scores in numpy; the store is only read. `python -m bench eval --dense-levers` writes
`dense-levers.json` beside the stored legs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from tqdm import tqdm

from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.retrieval.tenant_index import chunk_partition

DEPTH = 200
BATCH = 64


def _top(matrix: np.ndarray, ids: list[str], vector: np.ndarray) -> list[list[Any]]:
    scores = matrix @ vector
    top = np.argpartition(-scores, DEPTH)[:DEPTH]
    top = top[np.argsort(-scores[top])]
    return [[ids[i], float(scores[i])] for i in top]


async def served_chunk_vectors(db: Database) -> tuple[list[str], np.ndarray]:
    """Every chunk vector of the eval store's default tenant, with its document's external id."""
    await db.enable_vector_codec()
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT d.external_id, c.embedding FROM {chunk_partition('default')} c "  # noqa: S608
                    "JOIN documents d ON d.id = c.document_id"
                )
            )
        ).all()
    return [r[0] for r in rows], np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])


async def dump_dense_levers(
    db: Database, embedder: Embedder, splits: dict[str, list[tuple[str, str]]], out: Path
) -> None:
    if await asyncio.to_thread(out.exists):
        return
    chunk_ids, chunk_matrix = await served_chunk_vectors(db)
    async with db.engine.connect() as conn:
        docs = (
            await conn.execute(text("SELECT external_id, title, text FROM documents WHERE tenant_id = 'default'"))
        ).all()
    doc_ids = [r[0] for r in docs]
    texts = [f"{r[1]}\n{r[2]}" for r in docs]
    parts = []
    for start in tqdm(range(0, len(texts), BATCH), desc="embed whole documents", unit="batch"):
        parts.append(await embedder.embed(texts[start : start + BATCH]))
    doc_matrix = np.concatenate(parts).astype(np.float32)
    result: dict[str, dict[str, Any]] = {}
    for split, queries in splits.items():
        result[split] = {}
        for qid, query in tqdm(queries, desc=f"dense levers {split}", unit="query"):
            vector = np.asarray(await embedder.embed_query(query), dtype=np.float32)
            result[split][qid] = {
                "exact": _top(chunk_matrix, chunk_ids, vector),
                "doc": _top(doc_matrix, doc_ids, vector),
            }
    await asyncio.to_thread(out.write_text, json.dumps(result))
