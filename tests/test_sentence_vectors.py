"""The extractive generator's sentence vectors are embedded once per chunk and kept in
`chunk_sentences`, so another process (a replica, a restart) answers without embedding them again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from contextlib import aclosing

import numpy as np
import pytest
from sqlalchemy import text

from domain.answers.extractive import ExtractiveGenerator, pieces
from domain.answers.sentence_vectors import PassageVectors, SentenceVectorStore, backfill, split_passage
from domain.answers.service import Answering, AnswerRequest, Delta, Done, SourcesReady
from domain.documents import service as documents
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import keyword_backend
from domain.providers.embedding import LocalEmbedder, Vectors
from domain.rerank.service import Reranking
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs

DOCS = [
    DocumentInput(
        title="Lighthouse keepers",
        text="The keeper climbed the tower every night. He lit the great lamp before dusk. "
        "Ships far out at sea steered by its beam. In winter storms the glass often cracked.",
    ),
    DocumentInput(
        title="Bee colonies",
        text="A colony has one queen and thousands of workers. Workers gather nectar from flowers. "
        "The queen lays up to two thousand eggs a day. Drones exist only to mate.",
    ),
]
QUESTION = "Who lit the lamp in the lighthouse tower?"


class SpyEmbedder:
    """The real embedder, recording which texts were embedded as passages (not as queries)."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.embedded: list[str] = []

    async def embed(self, texts: list[str]) -> Vectors:
        self.embedded += texts
        return await self.inner.embed(texts)

    async def embed_query(self, query: str) -> Vectors:
        return await self.inner.embed_query(query)

    def count_tokens(self, value: str) -> int:
        return self.inner.count_tokens(value)


async def _answer(db: Database, embedder: SpyEmbedder, tenant: str) -> tuple[str, list[uuid.UUID]]:
    answering = Answering(
        db=db,
        embedder=embedder,
        keyword_backend=await keyword_backend(db),
        reranking=Reranking(),
        extractive=ExtractiveGenerator(embedder, store=SentenceVectorStore(db, embedder.name, embedder.dim)),
    )
    prepared = await answering.prepare(tenant, AnswerRequest(question=QUESTION, sources=2))
    parts = []
    async with aclosing(answering.events(tenant, prepared)) as events:
        async for event in events:
            if isinstance(event, Delta):
                parts.append(event.text)
    return "".join(parts), [s.hit.chunk_id for s in prepared.sources if s.hit is not None]


async def _rows(db: Database, tenant: str) -> dict[uuid.UUID, tuple[str, list[str], bytes]]:
    async with db.session(tenant) as session:
        rows = (await session.execute(text("SELECT chunk_id, model, sentences, vectors FROM chunk_sentences"))).all()
    return {r[0]: (r[1], list(r[2]), bytes(r[3])) for r in rows}


async def test_sentence_vectors_are_stored_once_and_reused_by_another_process(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    first = SpyEmbedder(embedder)
    answer, chunk_ids = await _answer(db, first, tenant)
    assert "lamp" in answer.lower() and len(chunk_ids) == 2
    assert first.embedded  # the first answer over these chunks embedded their sentences

    rows = await _rows(db, tenant)
    assert set(rows) == set(chunk_ids)
    async with db.session(tenant) as session:
        found = await session.execute(text("SELECT id, text FROM chunks WHERE id = ANY(:i)"), {"i": chunk_ids})
    texts: dict[uuid.UUID, str] = {r[0]: r[1] for r in found.all()}
    for chunk_id, (model, sentences, blob) in rows.items():
        assert model == embedder.name
        assert sentences == split_passage(texts[chunk_id])
        stored = np.frombuffer(blob, dtype=np.float32).reshape(len(sentences), embedder.dim)
        assert np.allclose(stored, await embedder.embed(sentences), atol=1e-4)

    # A new generator (another replica, or this one restarted) has an empty cache: it reads the
    # stored vectors and embeds no sentence, and it says the same thing.
    second = SpyEmbedder(embedder)
    again, _ = await _answer(db, second, tenant)
    assert second.embedded == []
    assert again == answer


async def test_stored_sentences_are_the_tenants_own_and_go_with_their_document(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    outcome = await ingest_docs(db, embedder, tenant, DOCS)
    await _answer(db, SpyEmbedder(embedder), tenant)
    assert await _rows(db, tenant)
    other = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, other)
    assert await _rows(db, other) == {}  # row-level security
    for item in outcome.documents:
        await documents.delete(db=db, tenant_id=tenant, document_id=item.document.id)
    assert await _rows(db, tenant) == {}


async def test_embed_sentences_ahead_of_time_leaves_answers_nothing_to_embed(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    assert await backfill(db, embedder, tenant, batch=1) == 2  # one chunk per batch: the keyset pages
    assert await backfill(db, embedder, tenant) == 0  # resumable: nothing is done twice
    async with db.session(tenant) as session:
        chunks = set((await session.execute(text("SELECT id FROM chunks"))).scalars())
    assert set(await _rows(db, tenant)) == chunks
    spy = SpyEmbedder(embedder)
    answer, _ = await _answer(db, spy, tenant)
    assert "lamp" in answer.lower() and spy.embedded == []


class CountingStore(SentenceVectorStore):
    """The real store, counting its reads."""

    loads = 0

    async def load(self, tenant_id: str, chunk_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PassageVectors]:
        self.loads += 1
        return await super().load(tenant_id, chunk_ids)


def _answering(db: Database, embedder: LocalEmbedder, store: SentenceVectorStore, backend: str) -> Answering:
    extractive = ExtractiveGenerator(embedder, store=store)
    return Answering(db=db, embedder=embedder, keyword_backend=backend, reranking=Reranking(), extractive=extractive)


def _preloads() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "preload" in getattr(t.get_coro(), "__qualname__", "")]


async def test_sentence_vectors_are_read_while_the_sources_go_out(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    store = CountingStore(db, embedder.name, embedder.dim)
    answering = _answering(db, embedder, store, await keyword_backend(db))
    prepared = await answering.prepare(tenant, AnswerRequest(question=QUESTION, sources=2))
    async with aclosing(answering.events(tenant, prepared)) as events:
        # given: the sources are out, and the client has not asked for the next event yet
        assert isinstance(await anext(events), SourcesReady)
        # when: the loop runs (while the AnswerSources message is being sent)
        await asyncio.sleep(0)
        # then: the sentence vectors are already being read
        assert store.loads == 1
        rest = [e async for e in events]
    assert isinstance(rest[-1], Done) and "lamp" in rest[-1].text.lower()
    assert store.loads == 1  # read once, not again when the text starts


async def test_a_stream_closed_after_its_sources_leaves_no_read_behind(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    answering = _answering(db, embedder, CountingStore(db, embedder.name, embedder.dim), await keyword_backend(db))
    prepared = await answering.prepare(tenant, AnswerRequest(question=QUESTION, sources=2))
    events = answering.events(tenant, prepared)
    assert isinstance(await anext(events), SourcesReady)
    assert len(_preloads()) == 1
    await events.aclose()  # the client went away
    assert _preloads() == []
    async with db.session(tenant) as session:
        stored = await session.execute(text("SELECT count(*) FROM answers WHERE id = :i"), {"i": prepared.answer_id})
        assert stored.scalar_one() == 0  # as before: nothing was said, nothing is stored


class CountingReads(SentenceVectorStore):
    """The real store, counting the queries it sends."""

    reads = 0

    async def _read(self, tenant_id: str, chunk_ids: list[uuid.UUID]) -> dict[uuid.UUID, PassageVectors]:
        self.reads += 1
        return await super()._read(tenant_id, chunk_ids)


async def test_reads_asked_for_together_are_one_query_and_each_gets_its_own_rows(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    # given: two chunks with stored sentence vectors
    await ingest_docs(db, embedder, tenant, DOCS)
    await backfill(db, embedder, tenant)
    async with db.session(tenant) as session:
        a, b = (await session.execute(text("SELECT id FROM chunks ORDER BY id"))).scalars().all()
    store = CountingReads(db, embedder.name, embedder.dim)
    # when: three answers ask at once (one of them for a chunk that does not exist)
    missing = uuid.uuid4()
    got = await asyncio.gather(store.load(tenant, [a]), store.load(tenant, [b, missing]), store.load(tenant, [a, b]))
    # then: one query, and each caller sees only what it asked for
    assert store.reads == 1
    assert [set(g) for g in got] == [{a}, {b}, {a, b}]
    assert got[0][a].sentences == got[2][a].sentences
    assert store._reading == {} and store._queued == {}
    # and a read alone still goes at once
    assert set(await store.load(tenant, [b])) == {b} and store.reads == 2


async def test_the_extractive_answer_streams_in_pieces_of_a_few_words(embedder: LocalEmbedder) -> None:
    """Each delta is a GraphQL result and a websocket message: one per word was most of a streamed
    answer's server CPU, so the words come a few at a time (still progressively)."""
    from domain.answers.sources import Source

    generator = ExtractiveGenerator(embedder)
    source = Source(1, "Lighthouse keepers", DOCS[0].text)
    streamed = [p async for p in generator.stream(QUESTION, [source], audience=None, history=[])]
    assert all(isinstance(p, str) for p in streamed)
    text = "".join(str(p) for p in streamed)
    assert "lamp" in text and len(streamed) >= 2
    assert streamed == pieces(text)


@pytest.mark.parametrize(
    ("words", "sizes"),
    [
        (1, [1]),
        (6, [6]),
        (7, [6, 1]),
        (30, [6, 9, 13, 2]),
        # The longest extractive answer (max_words 110): 6 deltas, where 6 words each took 19.
        (110, [6, 9, 13, 19, 28, 35]),
    ],
)
def test_deltas_start_at_six_words_and_grow_by_half(words: int, sizes: list[int]) -> None:
    text = " ".join(f"w{i}" for i in range(words))
    split = pieces(text)
    assert "".join(split) == text
    assert [len(p.split()) for p in split] == sizes
