"""`python -m bench long-query-quality`: how a pasted paragraph's dense vector and keyword term cap
affect retrieval, on queries built from SciFact *train* (no long-query test set exists). Quality
only: run it niced, no lock. Sets:

- `mlt` ("more like this"): a train claim's relevant abstract is the query, the claim's other
  relevant abstracts are the answers, the query's own document is ignored (BEIR's rule for sets
  whose queries are documents). Claims with two or more relevant abstracts only.
- `sources`: runs of abstracts cut to 1,000-4,000 characters, as the bench's long-query pool (on
  another seed); the answers are the abstracts the paragraph was cut from (200+ characters each).
- `buried`: a train claim inserted at a random sentence boundary among other abstracts' sentences
  (1,000-4,000 characters); the answers are the claim's relevant abstracts, the filler's own are
  ignored. A hard case for any pooling: the claim is a small part of the paragraph.

Dense vectors: `full` (every window's unit vector averaged, as served: as many windows as
fit, rounded up to a multiple of the encoder's lanes), `unbalanced` (as many as fit), `first` (the first 256
word pieces only), `head2` (the first two windows), `salient254`/`salient508` (the sentences
densest in rare terms, up to one or two windows' word pieces, embedded as the served path
embeds that text)."""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from api import embedded
from api.bootstrap import build_embedder
from api.settings import Settings
from bench.beir import TENANT, _external_ids, load, store_tag
from domain.evaluation.metrics import ndcg_at_k, recall_at_k
from domain.persistence.database import Database
from domain.persistence.migrate import keyword_backend
from domain.retrieval import long_query as lq
from domain.retrieval.search import SearchOptions, search

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
Item = tuple[str, dict[str, int], set[str]]  # query, relevant documents, documents to ignore


def more_like_this(corpus: dict[str, str], qrels: dict[str, dict[str, int]]) -> list[Item]:
    out: list[Item] = []
    for relevant in qrels.values():
        docs = [d for d in relevant if d in corpus]
        if len(docs) >= 2:
            out.extend((corpus[d], {o: 1 for o in docs if o != d}, {d}) for d in docs)
    return out


def sources(corpus: dict[str, str], n: int) -> list[Item]:
    rng = random.Random(5)
    ids = sorted(corpus)
    out: list[Item] = []
    for _ in range(n):
        want = rng.randint(1000, 4000)
        parts: list[str] = []
        while sum(len(corpus[d]) + 1 for d in parts) < want:
            parts.append(rng.choice(ids))
        relevant, at = {}, 0
        for d in parts:
            if want - at >= 200:
                relevant[d] = 1
            at += len(corpus[d]) + 1
        out.append((" ".join(corpus[d] for d in parts)[:want], relevant, set()))
    return out


def buried(corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]], n: int) -> list[Item]:
    rng = random.Random(11)
    ids, qids = sorted(corpus), sorted(qrels)
    rng.shuffle(qids)
    out: list[Item] = []
    for q in qids[:n]:
        want = rng.randint(1000, 4000)
        sentences: list[str] = []
        filler: set[str] = set()
        while sum(len(s) + 1 for s in sentences) < want:
            d = rng.choice(ids)
            if d not in qrels[q]:
                filler.add(d)
                sentences.extend(_SENTENCE.split(corpus[d]))
        sentences.insert(rng.randrange(len(sentences) + 1), queries[q])
        out.append((" ".join(sentences), dict(qrels[q]), filler))
    return out


def store_url(data_dir: Path) -> str:
    """The eval's cached store (`make eval` builds it), as `python -m bench eval` opens it."""
    return embedded.start(data_dir.resolve() / f"pgdata-{store_tag(Settings())}")


async def run_long_query_quality(dataset: Path, url: str, caps: list[int], methods: list[str]) -> None:
    settings = Settings()
    rows, queries, qrels = load(dataset, "train")
    corpus = {d["_id"]: f"{d['title']}. {d['text']}".strip() for d in rows}
    sets = {
        "mlt": more_like_this(corpus, qrels),
        "sources": sources(corpus, 200),
        "buried": buried(corpus, queries, qrels, 300),
    }
    db = Database(url, hnsw_ef_search=settings.hnsw_ef_search)
    try:
        await db.enable_vector_codec()
        embedder = build_embedder(settings)
        backend = await keyword_backend(db)
        ext = await _external_ids(db)
        terms = lq.TermStatistics(db)
        dense = _dense_methods(embedder, terms)
        for name, items in sets.items():
            for cap in caps:
                terms.cap = cap
                keyword_queries = [await terms.informative(TENANT, q) for q, _, _ in items]
                for method in methods:
                    totals: dict[str, float] = defaultdict(float)
                    for (q, relevant, ignore), kq in zip(items, keyword_queries, strict=True):
                        vector = await dense[method](q)
                        for mode in ("HYBRID", "DENSE", "KEYWORD") if method == "full" else ("HYBRID", "DENSE"):
                            result = await search(
                                db=db,
                                tenant_id=TENANT,
                                query_vector=vector,
                                query=q,
                                first=100,
                                options=SearchOptions(mode=mode),
                                keyword_backend=backend,
                                log=False,
                                keyword_query=kq,
                            )
                            ranked = [ext[h.document.id] for h in result.hits if ext[h.document.id] not in ignore]
                            totals[f"{mode.lower()}_ndcg@10"] += ndcg_at_k(ranked, relevant, 10)
                            totals[f"{mode.lower()}_recall@100"] += recall_at_k(ranked, relevant, 100)
                    cells = " ".join(f"{k}={v / len(items):.4f}" for k, v in sorted(totals.items()))
                    print(f"long-query-quality set={name} n={len(items)} cap={cap} dense={method} {cells}", flush=True)
    finally:
        await db.dispose()


def _dense_methods(embedder: Any, terms: lq.TermStatistics) -> dict[str, Callable[[str], Awaitable[Any]]]:
    limit = int(embedder.max_tokens) - 2

    def windows(q: str) -> list[str]:
        words = q.split()
        per = max(1, int(len(words) * limit / embedder.count_tokens(q) * 0.9))
        return [" ".join(words[i : i + per]) for i in range(0, len(words), per)]

    async def one(text: str) -> Any:
        # Through embed(), not embed_query(): the encoder truncates to its 256 word pieces.
        return (await embedder.embed([text, text]))[0]

    async def full(q: str) -> Any:
        return await lq.embed_any_length(embedder, q)

    async def unbalanced(q: str) -> Any:  # windows as large as fit, however many lanes
        tokens = embedder.count_tokens(q)
        if tokens <= limit:
            return await lq.embed_any_length(embedder, q)
        return await lq.pool_windows(embedder, lq.query_windows(q, tokens, limit, 1))

    async def head2(q: str) -> Any:
        chosen = windows(q)[:2]
        if len(chosen) == 1:
            return await one(chosen[0])
        pooled = (await embedder.embed(chosen)).mean(axis=0)
        return (pooled / np.linalg.norm(pooled)).astype(np.float32)

    async def salient(q: str, budget: int) -> Any:
        sentences = [s for s in _SENTENCE.split(q) if s.strip()]
        words = [[w.lower() for w in re.findall(r"\w+", s)] for s in sentences]
        stats = await terms._stats(TENANT)
        lexemes = await terms._lexemes(TENANT, sorted({w for s in words for w in s}))

        def idf(word: str) -> float:
            lexeme = lexemes.get(word) or ""
            df = stats.df.get(lexeme, 0)
            return math.log((stats.chunks - df + 0.5) / (df + 0.5) + 1.0) if lexeme else 0.0

        density = [sum(idf(w) for w in set(s)) / max(1, len(s)) for s in words]
        keep: list[int] = []
        used = 0
        for i in sorted(range(len(sentences)), key=lambda i: -density[i]):
            tokens = embedder.count_tokens(sentences[i])
            if keep and used + tokens > budget:
                continue
            keep.append(i)
            used += tokens
        text = " ".join(sentences[i] for i in sorted(keep))
        return await (one(text) if budget <= limit else full(text))

    return {
        "full": full,
        "unbalanced": unbalanced,
        "first": lambda q: one(q),
        "head2": head2,
        "salient254": lambda q: salient(q, 254),
        "salient508": lambda q: salient(q, 508),
    }
