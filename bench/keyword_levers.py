"""Keyword-side levers of issue 17, stored as extra legs for offline tuning (bench/tuning.py):

- `doc`: BM25 over whole documents (title + abstract, one row each) instead of chunks;
- `title`: BM25 over titles alone, a field of its own to add to the chunk score;
- `title2`: the chunk index with the title repeated (it is already prepended once);
- `rm3-<source>-d<docs>-t<terms>`: RM3 pseudo-relevance feedback. The feedback documents are the
  top `docs` of the keyword leg (or of the default hybrid ranking); each term's weight is
  sum over them of P(term | doc) × the document's normalised score; the `terms` heaviest terms not
  in the query form an expansion query (each repeated in proportion to its weight, since
  pg_textsearch counts a repeated query term again). Its leg is stored alone: BM25 is a sum over
  query terms, so the expanded query's score is the original leg + λ × this one, and λ is tuned
  offline.

Each variant's index is a bench-only table in schema `bench_levers` of the eval store; the served
tables are not touched. `python -m bench eval --keyword-levers` writes `keyword-levers.json`."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from tqdm import tqdm

from domain.documents.chunking import TokenCounter
from domain.persistence.database import Database
from domain.retrieval.fusion import fuse
from domain.retrieval.tenant_index import chunk_partition, keyword_index

TENANT = "default"
DEPTH = 200
RM3_DOCS = (3, 10)
RM3_TERMS = (10, 25)
RM3_SOURCES = ("keyword", "hybrid")
MAX_REPEAT = 3
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]+")

TABLES = {
    "doc": "SELECT external_id, title || E'\\n' || text FROM documents WHERE tenant_id = 'default'",
    "title": "SELECT external_id, title FROM documents WHERE tenant_id = 'default'",
    "title2": (
        "SELECT d.external_id, d.title || E'\\n' || c.search_text FROM {partition} c "
        "JOIN documents d ON d.id = c.document_id"
    ),
}


async def _build_tables(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_levers"))
        for name, select in TABLES.items():
            exists = await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"bench_levers.{name}"})
            if exists.scalar_one():
                continue
            await conn.execute(
                text(
                    f"CREATE TABLE bench_levers.{name} AS "  # noqa: S608
                    f"SELECT x.* FROM ({select.format(partition=chunk_partition(TENANT))}) AS x(doc, body)"
                )
            )
            await conn.execute(
                text(
                    f"CREATE INDEX bench_levers_{name}_bm25 ON bench_levers.{name} "
                    "USING bm25 (body) WITH (text_config = 'english')"
                )
            )


async def _leg(db: Database, table: str, query: str) -> list[list[Any]]:
    if not query.strip():
        return []
    score = f"(body <@> to_bm25query(:q, 'bench_levers.bench_levers_{table}_bm25'))"
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT doc, -{score} FROM bench_levers.{table} ORDER BY {score} LIMIT {DEPTH}"),  # noqa: S608
                {"q": query},
            )
        ).all()
    return [[d, float(s)] for d, s in rows if s > 0]


async def _chunk_leg(db: Database, query: str) -> list[list[Any]]:
    """The served keyword leg (the tenant's partition index), one row per chunk, external ids."""
    if not query.strip():
        return []
    partition, index = chunk_partition(TENANT), keyword_index(TENANT)
    score = f"(c.search_text <@> to_bm25query(:q, '{index}'))"
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT d.external_id, -{score} FROM {partition} c JOIN documents d ON d.id = c.document_id "  # noqa: S608
                    f"ORDER BY {score} LIMIT {DEPTH}"
                ),
                {"q": query},
            )
        ).all()
    return [[d, float(s)] for d, s in rows if s > 0]


class Lexicon:
    """Stemmed lexemes of words (the index's english config), asked of PostgreSQL and cached."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lexeme: dict[str, str] = {}

    async def of(self, words: list[str]) -> dict[str, str]:
        missing = [w for w in dict.fromkeys(words) if w not in self.lexeme]
        if missing:
            async with self.db.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT w, array_to_string(tsvector_to_array(to_tsvector('english', w)), ' ') "
                            "FROM unnest(CAST(:w AS text[])) w"
                        ),
                        {"w": missing},
                    )
                ).all()
            self.lexeme.update({w: lex for w, lex in rows})
        return {w: self.lexeme[w] for w in words}


def best_per_doc(rows: list[list[Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for doc, score in rows:
        out[doc] = max(score, out.get(doc, float("-inf")))
    return out


async def rm3_query(
    lexicon: Lexicon, docs: dict[str, str], feedback: list[tuple[str, float]], query: str, terms: int
) -> str:
    """The expansion query: the `terms` heaviest RM3 terms outside the query, as surface words."""
    qlex = set((await lexicon.of([w.lower() for w in _WORD.findall(query)])).values())
    top = max((s for _, s in feedback), default=0.0)
    # Feedback documents weighted by exp(score - best): a softmax over BM25, as RM3 over
    # query likelihoods weights by P(Q | D).
    weights = {d: math.exp(s - top) for d, s in feedback}
    total_w = sum(weights.values()) or 1.0
    relevance: dict[str, float] = defaultdict(float)
    surface: dict[str, str] = {}
    for doc, w in weights.items():
        words = [x.lower() for x in _WORD.findall(docs[doc])]
        lex = await lexicon.of(words)
        counts: dict[str, int] = defaultdict(int)
        for word in words:
            lx = lex[word]
            if lx and " " not in lx:
                counts[lx] += 1
                surface.setdefault(lx, word)
        length = sum(counts.values()) or 1
        for lx, n in counts.items():
            relevance[lx] += (w / total_w) * n / length
    chosen = sorted((lx for lx in relevance if lx not in qlex), key=lambda lx: -relevance[lx])[:terms]
    if not chosen:
        return ""
    heaviest = relevance[chosen[0]]
    return " ".join(" ".join([surface[lx]] * max(1, round(MAX_REPEAT * relevance[lx] / heaviest))) for lx in chosen)


async def dump_keyword_levers(
    db: Database, splits: dict[str, list[tuple[str, str]]], legs: dict[str, dict[str, Any]], out: Path
) -> None:
    """`legs`: the stored per-chunk legs of each split (legs-<split>.json), for RM3's feedback
    documents."""
    if await asyncio.to_thread(out.exists):
        return
    await _build_tables(db)
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT external_id, title || ' ' || text FROM documents WHERE tenant_id = :t"), {"t": TENANT}
            )
        ).all()
    docs = {d: body for d, body in rows}
    lexicon = Lexicon(db)
    result: dict[str, dict[str, Any]] = {}
    for split, queries in splits.items():
        result[split] = {}
        for qid, query in tqdm(queries, desc=f"keyword levers {split}", unit="query"):
            leg = legs[split][qid]
            entry: dict[str, Any] = {name: await _leg(db, name, query) for name in TABLES}
            keyword = best_per_doc(leg["keyword"])
            hybrid = fuse(best_per_doc(leg["dense"]), keyword, method="ZSCORE", alpha=0.5)
            for source, scores in (("keyword", keyword), ("hybrid", hybrid)):
                ordered = sorted(scores, key=lambda d: -scores[d])
                for n_docs in RM3_DOCS:
                    # Feedback weights from the BM25 scores in both cases: the fused scores are
                    # z-scores, on another scale, so hybrid only chooses which documents.
                    feedback = [(d, keyword.get(d, 0.0)) for d in ordered[:n_docs]]
                    for n_terms in RM3_TERMS:
                        expansion = await rm3_query(lexicon, docs, feedback, query, n_terms)
                        entry[f"rm3-{source}-d{n_docs}-t{n_terms}"] = await _chunk_leg(db, expansion)
            result[split][qid] = entry
    await asyncio.to_thread(out.write_text, json.dumps(result))


async def dump_keyword_chunkings(
    db: Database,
    corpus: list[dict[str, Any]],
    count: TokenCounter,
    splits: dict[str, list[tuple[str, str]]],
    leg_dir: Path,
    settings: Sequence[tuple[int, int]],
) -> None:
    """The keyword leg over the corpus chunked at other sizes (bench/chunkings.py): a bench-only
    BM25 table per setting, `bench_levers.k<name>`, and its per-chunk legs as
    `keyword-<name>.json`. `count` is the encoder's token count, as ingestion chunks by it."""
    from bench.chunkings import chunk_corpus, name

    for tokens, overlap in settings:
        tag = name(tokens, overlap)
        out = leg_dir / f"keyword-{tag}.json"
        if await asyncio.to_thread(out.exists):
            continue
        table = f"k{tag}"
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_levers"))
            exists = await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"bench_levers.{table}"})
            if not exists.scalar_one():
                ids, texts = await asyncio.to_thread(chunk_corpus, corpus, count, tokens, overlap)
                await conn.execute(text(f"CREATE TABLE bench_levers.{table} (doc text, body text)"))
                await conn.execute(
                    text(f"INSERT INTO bench_levers.{table} VALUES (:d, :b)"),  # noqa: S608
                    [{"d": d, "b": b} for d, b in zip(ids, texts, strict=True)],
                )
                await conn.execute(
                    text(
                        f"CREATE INDEX bench_levers_{table}_bm25 ON bench_levers.{table} "
                        "USING bm25 (body) WITH (text_config = 'english')"
                    )
                )
        result = {
            split: {qid: await _leg(db, table, query) for qid, query in tqdm(queries, desc=f"keyword {tag} {split}")}
            for split, queries in splits.items()
        }
        await asyncio.to_thread(out.write_text, json.dumps(result))
