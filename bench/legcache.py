"""Per-query, per-chunk leg results on disk, so aggregation, fusion and feedback levers are tuned
offline (cross-validated on train) without querying the store again for every setting.

One JSON file per split and store tag: {qid: {"dense": [[doc, score], ...], "keyword": [...],
"dense_prf": {beta: [[doc, score], ...]}}} with every chunk row each leg returned (a document can
appear several times: one row per chunk)."""

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
from domain.retrieval.search import build_sql

TENANT = "default"
DEPTH = 200
PRF_BETAS = (0.3, 0.6)
PRF_DOCS = 3


async def dump_legs(
    db: Database,
    embedder: Embedder,
    backend: str,
    queries: dict[str, str],
    qids: list[str],
    ext: dict[Any, str],
    path: Path,
) -> dict[str, Any]:
    if await asyncio.to_thread(path.exists):
        cached: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text))
        return cached
    out: dict[str, Any] = {}
    sql = text(build_sql("HYBRID", backend, "", TENANT))
    dense_only = text(build_sql("DENSE", backend, "", TENANT))
    for q in tqdm(qids, desc=f"legs {path.stem}", unit="query"):
        vec = await embedder.embed_query(queries[q])
        async with db.session(TENANT) as s:
            rows = (await s.execute(sql, {"tenant": TENANT, "k": DEPTH, "qv": vec, "qt": queries[q]})).all()
            legs: dict[str, Any] = {"dense": [], "keyword": []}
            for leg, chunk_id, doc_id, score, _text, _ordinal in rows:
                if leg == "keyword" and score <= 0:
                    continue
                legs[leg].append([ext[doc_id], float(score), str(chunk_id)])
            # Rocchio: move the query toward the mean of the top dense chunks' vectors.
            top = [r[2] for r in sorted(legs["dense"], key=lambda r: -r[1])[:PRF_DOCS]]
            legs["dense_prf"] = {}
            if top:
                emb = (
                    await s.execute(
                        text("SELECT embedding FROM chunks WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": top}
                    )
                ).all()
                centroid = np.mean([np.asarray(e[0].to_numpy(), dtype=np.float32) for e in emb], axis=0)
                for beta in PRF_BETAS:
                    moved = vec + beta * centroid
                    moved = (moved / np.linalg.norm(moved)).astype(np.float32)
                    got = (await s.execute(dense_only, {"tenant": TENANT, "k": DEPTH, "qv": moved})).all()
                    legs["dense_prf"][str(beta)] = [[ext[r[2]], float(r[3])] for r in got]
        for leg in ("dense", "keyword"):
            legs[leg] = [[d, sc] for d, sc, _ in legs[leg]]
        out[q] = legs
    await asyncio.to_thread(path.write_text, json.dumps(out))
    return out
