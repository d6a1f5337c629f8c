"""Dense-side levers of issue 17, stored as extra legs for offline tuning (bench/tuning_dense.py):

- `exact`: the chunk leg by exact cosine over every chunk vector of the store, against the served
  HNSW index (`hnsw.ef_search` 100): how much the index loses;
- `doc`: one vector per whole document (title + abstract, cut at the model's 256 word pieces), the
  other end of the chunk-size range from the served 200-piece chunks;
- `sentence`: exact cosine over the sentence vectors stored for answers (`chunk_sentences`, one
  per sentence of each chunk), one row per sentence: a claim often restates one sentence of its
  abstract, which a whole chunk's vector dilutes;
- `sentence_of`: the best sentence cosine of every document the stored legs returned
  (legs-<split>.json), as a search could add it for its own candidates without a sentence index.

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
SENTENCE_DEPTH = 600  # about 8 sentences per abstract: the same documents as DEPTH chunk rows
BATCH = 64


def _top(matrix: np.ndarray, ids: list[str], vector: np.ndarray) -> list[list[Any]]:
    return _best(matrix @ vector, ids, DEPTH)


def _best(scores: np.ndarray, ids: list[str], depth: int) -> list[list[Any]]:
    top = np.argpartition(-scores, depth)[:depth]
    top = top[np.argsort(-scores[top])]
    return [[ids[i], float(scores[i])] for i in top]


async def stored_sentence_vectors(db: Database, model: str, dim: int) -> tuple[list[str], np.ndarray]:
    """Every stored sentence vector of the default tenant, with its document's external id (a
    sentence two overlapping chunks share comes twice; the maximum does not mind)."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT d.external_id, s.vectors FROM chunk_sentences s "
                    "JOIN chunks c ON c.tenant_id = s.tenant_id AND c.id = s.chunk_id "
                    "JOIN documents d ON d.id = c.document_id WHERE s.tenant_id = 'default' AND s.model = :model"
                ),
                {"model": model},
            )
        ).all()
    if not rows:
        raise SystemExit("no stored sentence vectors: run `ragql embed-sentences --tenant default` on the eval store")
    ids: list[str] = []
    parts = []
    for external_id, blob in rows:
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(-1, dim)
        ids.extend([external_id] * len(vectors))
        parts.append(vectors)
    return ids, np.concatenate(parts)


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
    sentence_ids, sentence_matrix = await stored_sentence_vectors(db, embedder.name, embedder.dim)
    sentence_docs, sentence_doc_index = np.unique(np.asarray(sentence_ids), return_inverse=True)
    position = {str(doc): i for i, doc in enumerate(sentence_docs)}
    result: dict[str, dict[str, Any]] = {}
    for split, queries in splits.items():
        result[split] = {}
        legs_path = out.parent / f"legs-{split}.json"
        legs = json.loads(await asyncio.to_thread(legs_path.read_text)) if legs_path.exists() else {}
        for qid, query in tqdm(queries, desc=f"dense levers {split}", unit="query"):
            vector = np.asarray(await embedder.embed_query(query), dtype=np.float32)
            sentence_scores = sentence_matrix @ vector  # once, for both sentence legs
            best = np.full(len(sentence_docs), -1.0, dtype=np.float32)
            np.maximum.at(best, sentence_doc_index, sentence_scores)
            candidates = {row[0] for leg in ("dense", "keyword") for row in legs.get(qid, {}).get(leg, [])}
            result[split][qid] = {
                "sentence_of": {d: float(best[position[d]]) for d in candidates if d in position},
                "exact": _top(chunk_matrix, chunk_ids, vector),
                "doc": _top(doc_matrix, doc_ids, vector),
                "sentence": _best(sentence_scores, sentence_ids, SENTENCE_DEPTH),
            }
    await asyncio.to_thread(out.write_text, json.dumps(result))
