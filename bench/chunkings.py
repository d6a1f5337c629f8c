"""Issue 17's chunk-size sweep: the corpus chunked again at other sizes and overlaps, for the dense
leg (each setting embedded again, exact cosine in numpy) and for the keyword leg (bench/
keyword_levers.py indexes the same chunk texts with BM25), so bench/tuning_chunks.py can fuse
every pairing offline.

The chunks come from the served chunker (domain/documents/chunking.py) with the encoder's own
token count, as ingestion makes them. Each dense setting is its own store under `.ragql-eval/`:
`chunkings-<tag>/c<tokens>o<overlap>.npz` (chunk vectors, their documents, and the query vectors
of both splits), tagged like the eval store by embedding backend and export recipe, so vectors of
two model files never mix. Its legs (top chunk rows per judged query) go beside the stored legs as
`dense-c<tokens>o<overlap>.json`. A setting already stored is skipped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.dense_levers import served_chunk_vectors
from domain.documents.chunking import TokenCounter, chunk_document
from domain.persistence.database import Database
from domain.providers.embedding import Embedder

DEPTH = 200
BATCH = 256
# (chunk tokens, overlap tokens). The model reads at most 256 word pieces, two of them [CLS] and
# [SEP]: 254 is the largest chunk it sees whole. 200/48 is the served default: its vectors are
# the eval store's own (export_served), not embedded again.
DENSE_SETTINGS: tuple[tuple[int, int], ...] = ((200, 48), (128, 32), (254, 48), (200, 0), (96, 24), (128, 0))
# The keyword leg reads any length: also chunks past the model's window.
KEYWORD_SETTINGS: tuple[tuple[int, int], ...] = ((96, 24), (128, 32), (254, 48), (384, 48), (512, 0))


def name(tokens: int, overlap: int) -> str:
    return f"c{tokens}o{overlap}"


def chunk_corpus(
    corpus: Sequence[dict[str, Any]], count: TokenCounter, tokens: int, overlap: int
) -> tuple[list[str], list[str]]:
    """(document id per chunk, search text per chunk), chunked as ingestion chunks."""
    doc_ids: list[str] = []
    texts: list[str] = []
    for d in corpus:
        title, body = d["title"] or d["_id"], d["text"] or d["title"]
        for c in chunk_document(title, body, max_tokens=tokens, overlap_tokens=overlap, count=count):
            doc_ids.append(d["_id"])
            texts.append(c.search_text)
    return doc_ids, texts


def _top(matrix: np.ndarray, ids: list[str], vector: np.ndarray) -> list[list[Any]]:
    scores = matrix @ vector
    top = np.argpartition(-scores, DEPTH)[:DEPTH]
    top = top[np.argsort(-scores[top])]
    return [[ids[i], float(scores[i])] for i in top]


async def _embed(embedder: Embedder, texts: list[str], desc: str) -> np.ndarray:
    parts = []
    for start in tqdm(range(0, len(texts), BATCH), desc=desc, unit="batch"):
        parts.append(np.asarray(await embedder.embed(texts[start : start + BATCH]), dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def _stored(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as stored:
        return {k: stored[k] for k in stored.files}


def _store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)  # type: ignore[arg-type]


async def dump_dense_chunkings(
    embedder: Embedder,
    corpus: Sequence[dict[str, Any]],
    splits: dict[str, list[tuple[str, str]]],
    store_dir: Path,
    leg_dir: Path,
    settings: Sequence[tuple[int, int]] = DENSE_SETTINGS,
) -> None:
    qpath = store_dir / "queries.npz"
    qvec = await asyncio.to_thread(_stored, qpath)
    if qvec is None:
        qvec = {
            split: np.stack([np.asarray(await embedder.embed_query(q), dtype=np.float32) for _, q in queries])
            for split, queries in splits.items()
        }
        await asyncio.to_thread(_store, qpath, qvec)
    for tokens, overlap in settings:
        tag = name(tokens, overlap)
        out, docs_out = leg_dir / f"dense-{tag}.json", leg_dir / f"dense-{tag}-docs.npz"
        if await asyncio.to_thread(out.exists) and await asyncio.to_thread(docs_out.exists):
            continue
        vpath = store_dir / f"{tag}.npz"
        stored = await asyncio.to_thread(_stored, vpath)
        if stored is not None:
            ids, matrix = [str(x) for x in stored["ids"]], stored["vectors"]
        else:
            ids, texts = await asyncio.to_thread(chunk_corpus, corpus, embedder.count_tokens, tokens, overlap)
            started = time.perf_counter()
            matrix = await _embed(embedder, texts, f"embed {tag}")
            elapsed = time.perf_counter() - started
            print(f"{tag}: {len(texts)} chunks embedded in {elapsed:.0f}s ({len(texts) / len(corpus):.2f} per doc)")
            await asyncio.to_thread(_store, vpath, {"ids": np.asarray(ids), "vectors": matrix})
        result = {
            split: {qid: _top(matrix, ids, qvec[split][i]) for i, (qid, _) in enumerate(queries)}
            for split, queries in splits.items()
        }
        await asyncio.to_thread(leg_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(_store, docs_out, _doc_scores(matrix, ids, qvec))
        await asyncio.to_thread(out.write_text, json.dumps(result))


def _doc_scores(matrix: np.ndarray, ids: list[str], qvec: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every document's best-chunk cosine for every query (float16): what the dense leg would
    say of a document it did not return, for the fusion levers that fill a missing score."""
    order = np.argsort(np.asarray(ids), kind="stable")
    sorted_ids = np.asarray(ids)[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out: dict[str, np.ndarray] = {"docs": sorted_ids[starts]}
    for split, vectors in qvec.items():
        scores = vectors @ matrix[order].T
        out[split] = np.maximum.reduceat(scores, starts, axis=1).astype(np.float16)
    return out


async def export_served(db: Database, path: Path) -> None:
    """The eval store's own chunk vectors (the served 200/48 chunking), as a setting like the
    others, so the served chunks are searched exactly the same way (nothing is embedded)."""
    if await asyncio.to_thread(path.exists):
        return
    chunk_ids, vectors = await served_chunk_vectors(db)
    ids = np.asarray(chunk_ids)
    await asyncio.to_thread(_store, path, {"ids": ids, "vectors": vectors})
