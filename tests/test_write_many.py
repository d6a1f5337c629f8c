"""`documents.write_many`: the documents of one write in a fixed number of statements, with the
guarantees `_write_one` gave each document (real PostgreSQL, real embeddings)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text

from domain.documents import service as documents
from domain.documents.chunking import chunk_document
from domain.documents.validation import DocumentInput, normalize
from domain.errors import DomainError
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from tests.conftest import ingest_docs


async def _to_write(embedder: LocalEmbedder, doc: DocumentInput, *, embed: bool = True) -> documents.ToWrite:
    normalized = normalize(doc, "documents.0", max_chars=100_000)
    if not embed:
        return documents.ToWrite(normalized, None, None)
    chunks = chunk_document(
        normalized.title, normalized.text, max_tokens=16, overlap_tokens=4, count=embedder.count_tokens
    )
    return documents.ToWrite(normalized, chunks, await embedder.embed([c.search_text for c in chunks]))


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


async def _stored(db: Database, tenant: str) -> dict[str, tuple[str, int, list[str], bool]]:
    async with db.session(tenant) as s:
        rows = await s.execute(
            text(
                "SELECT d.external_id, d.text, d.chunk_count, "
                "array(SELECT c.text FROM chunks c WHERE c.document_id = d.id ORDER BY c.ordinal), "
                "EXISTS (SELECT 1 FROM document_vectors v WHERE v.document_id = d.id) "
                "FROM documents d WHERE d.tenant_id = :t"
            ),
            {"t": tenant},
        )
        return {str(e): (str(t), int(n), list(c), bool(v)) for e, t, n, c, v in rows.all()}


CHANGED = "Sea lions bark. Loudly."
SENTENCES = "Otters float on their backs. They hold hands while they sleep. Kelp keeps them in place."


async def test_one_write_of_mixed_documents_gives_each_its_outcome_in_a_few_statements(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    # given: two stored documents
    await ingest_docs(
        db,
        embedder,
        tenant,
        [
            DocumentInput(title="Kept", text=SENTENCES, external_id="kept"),
            DocumentInput(title="Changed", text=SENTENCES, external_id="changed"),
            DocumentInput(title="Raced", text=SENTENCES, external_id="raced"),
        ],
    )
    new = [DocumentInput(title=f"New {i}", text=f"{SENTENCES} Number {i}.", external_id=f"new-{i}") for i in range(8)]
    todo = [
        await _to_write(embedder, DocumentInput(title="Kept", text=SENTENCES, external_id="kept"), embed=False),
        *[await _to_write(embedder, d) for d in new],
        await _to_write(
            embedder, DocumentInput(title="Changed", text="Sea lions bark. Loudly.", external_id="changed")
        ),
        # Decided unchanged, but its stored text differs by the time of the write: refused.
        await _to_write(embedder, DocumentInput(title="Raced", text="Another text.", external_id="raced"), embed=False),
        await _to_write(embedder, DocumentInput(title="Anonymous", text=SENTENCES)),
    ]
    # when: they are written in one call
    with _statements(db) as seen:
        async with db.session(tenant) as session:
            outcomes = await documents.write_many(session, tenant, todo)
    # then: one outcome per document, in order
    statuses = [o if isinstance(o, DomainError) else o[1] for o in outcomes]
    assert statuses[0] == "UNCHANGED"
    assert statuses[1:9] == ["CREATED"] * 8
    assert statuses[9] == "UPDATED"
    assert isinstance(statuses[10], DomainError) and statuses[10].code == "CONFLICT"
    assert statuses[11] == "CREATED"
    stored = await _stored(db, tenant)
    assert stored["changed"][0] == CHANGED and stored["changed"][2] == [CHANGED]
    assert stored["raced"][0] == SENTENCES  # the refused one is untouched
    for i in range(8):
        _, count, chunks, has_vector = stored[f"new-{i}"]
        assert count == len(chunks) >= 2 and has_vector  # every chunk and the centroid
        assert " ".join(chunks).startswith("Otters float")
    # and: the statements do not grow with the documents (session setup, locks, previous hashes,
    # upsert, delete, chunks, centroids; the per-document path ran eight per document)
    assert len(seen) <= 8, seen


async def test_writers_of_overlapping_batches_in_opposite_orders_do_not_deadlock(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    # given: the same ten documents
    docs = [DocumentInput(title=f"Doc {i}", text=f"{SENTENCES} Item {i}.", external_id=f"d-{i}") for i in range(10)]
    todo = [await _to_write(embedder, d) for d in docs]

    async def write(order: list[documents.ToWrite]) -> list[str]:
        async with db.session(tenant) as session:
            outcomes = await documents.write_many(session, tenant, order)
            await asyncio.sleep(0.2)  # keeps its locks a while, as a write of many documents does
        return [o if isinstance(o, DomainError) else o[1] for o in outcomes]  # type: ignore[misc]

    # when: two writers take them in opposite orders at the same moment
    one, two = await asyncio.wait_for(asyncio.gather(write(todo), write(todo[::-1])), timeout=30)
    # then: both end (PostgreSQL aborts one of two writers that deadlock), one storing every
    # document and the other finding each stored with the same text
    assert sorted([one, two]) == [["CREATED"] * 10, ["UNCHANGED"] * 10]
    assert len(await _stored(db, tenant)) == 10
