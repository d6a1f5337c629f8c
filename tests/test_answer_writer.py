"""Answer rows by group commit: rows of answers that finish together share one transaction, each
caller returns once its own row is committed, and a bad row loses only itself."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from domain.answers.writer import AnswerWriter
from domain.persistence.database import Database
from domain.persistence.tables import Answer


def _answer(tenant: str, question: str = "q") -> Answer:
    answer_id = uuid.uuid4()
    return Answer(
        id=answer_id,
        tenant_id=tenant,
        session_id=answer_id,
        question=question,
        generator="extractive",
        status="done",
        took_ms=1.0,
    )


async def _transactions(db: Database, tenant: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each stored row's xmin: the transaction that wrote it."""
    async with db.session(tenant) as session:
        rows = await session.execute(text("SELECT id, xmin::text FROM answers WHERE id = ANY(:i)"), {"i": ids})
        return {r[0]: r[1] for r in rows.all()}


async def test_answers_finishing_together_are_written_in_one_transaction(db: Database, tenant: str) -> None:
    # given: eight answers of one tenant finishing in the same moment
    writer = AnswerWriter(db)
    records = [_answer(tenant) for _ in range(8)]
    # when: each is saved, as each stream's end saves its own
    await asyncio.gather(*(writer.save(r) for r in records))
    # then: every row is stored, and in fewer transactions than rows (the first goes alone)
    written = await _transactions(db, tenant, [r.id for r in records])
    assert set(written) == {r.id for r in records}
    assert len(set(written.values())) <= 2


async def test_a_save_returns_once_its_row_is_committed(db: Database, tenant: str) -> None:
    writer = AnswerWriter(db)
    record = _answer(tenant)
    await writer.save(record)
    assert set(await _transactions(db, tenant, [record.id])) == {record.id}


async def test_a_bad_row_fails_alone_and_the_rest_of_its_batch_is_stored(db: Database, tenant: str) -> None:
    writer = AnswerWriter(db)
    good = [_answer(tenant) for _ in range(4)]
    bad = _answer(tenant, question="\x00")  # PostgreSQL refuses a NUL in text
    results = await asyncio.gather(*(writer.save(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True)
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False, False]
    assert set(await _transactions(db, tenant, [r.id for r in [*good, bad]])) == {r.id for r in good}


async def test_each_tenant_gets_its_own_transaction(db: Database, tenant: str) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    from domain.tenancy import ensure_tenant

    await ensure_tenant(db, other)
    writer = AnswerWriter(db)
    mine, theirs = [_answer(tenant) for _ in range(3)], [_answer(other) for _ in range(3)]
    await asyncio.gather(*(writer.save(r) for r in [*mine, *theirs]))
    # Row-level security: each tenant sees its own rows, all of them.
    assert set(await _transactions(db, tenant, [r.id for r in mine + theirs])) == {r.id for r in mine}
    assert set(await _transactions(db, other, [r.id for r in mine + theirs])) == {r.id for r in theirs}


@pytest.mark.parametrize("count", [1, 3])
async def test_nothing_is_left_queued(db: Database, tenant: str, count: int) -> None:
    writer = AnswerWriter(db)
    await asyncio.gather(*(writer.save(_answer(tenant)) for _ in range(count)))
    assert writer._queued == {} and writer._flushing == {}


def test_the_insert_names_every_column_of_an_answer() -> None:
    from domain.answers.store import _COLUMNS

    # A column added to Answer and not to the INSERT would be silently left at its default.
    assert _COLUMNS == tuple(Answer.model_fields)
