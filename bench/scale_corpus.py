"""The corpora of `python -m bench scale`: one tenant of 10k, 100k or 1M chunks, each in its own
cached embedded store (`.ragql-bench/scale/pgdata-<size>`), built once.

Where the rows come from:
- **Real rows first.** SciFact's chunks exactly as the ingest stored them in the eval store
  (`make eval`'s `.ragql-eval/pgdata-<chunking>-<backend>`, ingested there if missing): text,
  search_text (title + text), token count and the MiniLM embedding. 13,459 chunks.
- **Perturbed copies beyond that.** Copy k of chunk i gets chunk i's vector plus Gaussian noise,
  renormalised, with the noise sized so that its expected cosine to the original is
  `NOISE_COSINE` (0.90): near neighbours, not duplicates. Its text is chunk i's sentences in a
  shuffled order with one of them swapped for a random SciFact sentence, so the BM25 leg sees the
  corpus's own vocabulary, term frequencies and lengths, not random tokens. Copies of one document
  form one synthetic document (title kept), so chunks per document stay SciFact's 2.6.

How they are loaded: binary COPY (asyncpg, pgvector's binary codec) straight into the tenant's
partition of `chunks`, detached from the parent meanwhile, with no index on it; then the indexes
the schema gives every partition are built (timed: HNSW and BM25 each), and the partition is
attached again, which adopts them. That is the state the ingest would have left, reached without
one index insert per row."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domain.tenancy import ensure_tenant

TENANT = "scale"
NOISE_COSINE = 0.90
COPY_BATCH = 20_000
NAMESPACE = uuid.UUID("5ca1e000-0000-4000-8000-000000000018")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Source:
    """SciFact's stored chunks, in (document, ordinal) order."""

    doc_ids: list[uuid.UUID]
    titles: list[str]
    ordinals: list[int]
    texts: list[str]
    token_counts: list[int]
    vectors: np.ndarray  # float32 [n, dim], unit length

    def __len__(self) -> int:
        return len(self.texts)


async def read_source(url: str) -> Source:
    import asyncpg
    from pgvector.asyncpg import register_vector

    conn = await asyncpg.connect(url)
    try:
        await register_vector(conn)
        rows = await conn.fetch(
            "SELECT c.document_id, d.title, c.ordinal, c.text, c.token_count, c.embedding "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.tenant_id = 'default' "
            "ORDER BY c.document_id, c.ordinal"
        )
    finally:
        await conn.close()
    if not rows:
        raise RuntimeError("the eval store has no SciFact chunks: run `python -m bench eval` once")
    vectors = np.stack([np.asarray(r["embedding"].to_numpy(), dtype=np.float32) for r in rows])
    return Source(
        doc_ids=[r["document_id"] for r in rows],
        titles=[r["title"] for r in rows],
        ordinals=[r["ordinal"] for r in rows],
        texts=[r["text"] for r in rows],
        token_counts=[r["token_count"] for r in rows],
        vectors=vectors,
    )


def noise_sigma(cosine: float, dim: int) -> float:
    """Per-dimension sigma whose expected cosine between v and normalise(v + noise) is `cosine`:
    |noise|^2 is dim * sigma^2, and cos = 1 / sqrt(1 + |noise|^2) for a unit v."""
    return float(np.sqrt((1.0 / cosine**2 - 1.0) / dim))


@dataclass
class Row:
    id: uuid.UUID
    document_id: uuid.UUID
    ordinal: int
    text: str
    search_text: str
    token_count: int


def synthetic_rows(source: Source, size: int, seed: int = 18) -> Iterator[tuple[list[Row], np.ndarray]]:
    """Batches of (rows, vectors): the real rows, then copy 1, 2, ... of each, up to `size`."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    sentences = [s for t in source.texts for s in _SENTENCE.split(t) if len(s) > 20]
    split = [_SENTENCE.split(t) for t in source.texts]
    sigma = noise_sigma(NOISE_COSINE, source.vectors.shape[1])
    n = len(source)
    for start in range(0, size, COPY_BATCH):
        idx = np.arange(start, min(size, start + COPY_BATCH))
        base, copy = idx % n, idx // n
        vectors = source.vectors[base].copy()
        noisy = copy > 0
        vectors[noisy] += rng.normal(0.0, sigma, size=(int(noisy.sum()), vectors.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for i, b, k in zip(idx.tolist(), base.tolist(), copy.tolist(), strict=True):
            title = source.titles[b]
            if k == 0:
                body = source.texts[b]
                doc = source.doc_ids[b]
            else:
                parts = list(split[b])
                pick.shuffle(parts)
                parts[pick.randrange(len(parts))] = pick.choice(sentences)
                body = " ".join(parts)
                doc = uuid.uuid5(NAMESPACE, f"{source.doc_ids[b]}-{k}")
            rows.append(
                Row(
                    id=uuid.uuid5(NAMESPACE, f"chunk-{i}"),
                    document_id=doc,
                    ordinal=source.ordinals[b],
                    text=body,
                    search_text=f"{title}\n{body}" if title else body,
                    token_count=source.token_counts[b],
                )
            )
        yield rows, vectors


async def _embedding_type(conn: Any) -> str:
    kind: str = await conn.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
    )
    return kind


def _opclass(kind: str) -> str:
    return "halfvec_cosine_ops" if kind.startswith("halfvec") else "vector_cosine_ops"


async def load_corpus(url: str, source: Source, size: int, *, maintenance_work_mem: str) -> dict[str, Any]:
    """Fill the tenant's partition with `size` chunks and build its indexes; returns the timings."""
    import asyncpg
    from pgvector import HalfVector
    from pgvector.asyncpg import register_vector

    from domain.persistence.database import Database
    from domain.retrieval.tenant_index import chunk_partition, keyword_index

    db = Database(url)
    try:
        await ensure_tenant(db, TENANT)
    finally:
        await db.dispose()
    part, bm25 = chunk_partition(TENANT), keyword_index(TENANT)
    conn = await asyncpg.connect(url)
    timings: dict[str, Any] = {"size": size}
    try:
        await register_vector(conn)
        kind = await _embedding_type(conn)
        half = kind.startswith("halfvec")
        attached = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = $1::regclass)", part)
        if attached:  # an interrupted build leaves it detached
            await conn.execute(f"ALTER TABLE chunks DETACH PARTITION {part}")
        for (name,) in await conn.fetch(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::regclass", part
        ):
            con = await conn.fetchval("SELECT conname FROM pg_constraint WHERE conindid = $1::regclass", name)
            if con:
                await conn.execute(f"ALTER TABLE {part} DROP CONSTRAINT {con}")
            else:
                await conn.execute(f"DROP INDEX {name}")
        # The document foreign key stays on a detached partition: dropped too, so the chunks can
        # go in before their documents; ATTACH adds it back and validates every row.
        for (con,) in await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'", part
        ):
            await conn.execute(f"ALTER TABLE {part} DROP CONSTRAINT {con}")
        await conn.execute(f"TRUNCATE {part}")
        await conn.execute("DELETE FROM documents WHERE tenant_id = $1", TENANT)
        started = time.perf_counter()
        docs: dict[uuid.UUID, tuple[str, int]] = {}
        for rows, vectors in synthetic_rows(source, size):
            for r in rows:
                title, count = docs.get(r.document_id, (r.search_text.split("\n", 1)[0], 0))
                docs[r.document_id] = (title, count + 1)
            records = [
                (
                    r.id,
                    TENANT,
                    r.document_id,
                    r.ordinal,
                    r.text,
                    r.search_text,
                    r.token_count,
                    HalfVector(v) if half else v,
                )
                for r, v in zip(rows, vectors, strict=True)
            ]
            await conn.copy_records_to_table(
                part,
                records=records,
                columns=[
                    "id",
                    "tenant_id",
                    "document_id",
                    "ordinal",
                    "text",
                    "search_text",
                    "token_count",
                    "embedding",
                ],
            )
        # A document's text is its title here: search reads documents by id for the page only,
        # and the scale figures are about chunks.
        await conn.copy_records_to_table(
            "documents",
            records=[(d, TENANT, t, t, f"scale-{d}", n) for d, (t, n) in docs.items()],
            columns=["id", "tenant_id", "title", "text", "content_hash", "chunk_count"],
        )
        timings["copy_s"] = time.perf_counter() - started
        timings["documents"] = len(docs)
        await conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        timings["hnsw_build_s"] = await _timed(
            conn, f"CREATE INDEX {part}_embedding_hnsw ON {part} USING hnsw (embedding {_opclass(kind)})"
        )
        timings["bm25_build_s"] = await _timed(
            conn, f"CREATE INDEX {bm25} ON {part} USING bm25 (search_text) WITH (text_config = 'english')"
        )
        timings["btree_build_s"] = await _timed(
            conn, f"ALTER TABLE {part} ADD PRIMARY KEY (tenant_id, id)"
        ) + await _timed(conn, f"CREATE INDEX {part}_document ON {part} (document_id)")
        timings["attach_s"] = await _timed(
            conn, f"ALTER TABLE chunks ATTACH PARTITION {part} FOR VALUES IN ('{TENANT}')"
        )
        await conn.execute(f"ANALYZE {part}")
        await conn.execute("ANALYZE documents")
        timings["embedding_type"] = kind
    finally:
        await conn.close()
    return timings


async def _timed(conn: Any, sql: str) -> float:
    started = time.perf_counter()
    await conn.execute(sql)
    return time.perf_counter() - started


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def run(coro: Any) -> Any:
    return asyncio.run(coro)
