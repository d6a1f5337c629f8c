"""Answers in the database: the record of each one, and the turns of a session."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlmodel import col, select

from domain.answers.error_codes import AnswerErrorCode
from domain.answers.prompt import Turn
from domain.errors import InvalidInput
from domain.persistence.database import Database
from domain.persistence.tables import Answer


async def session_history(db: Database, tenant_id: str, session_id: uuid.UUID, *, turns: int) -> tuple[list[Turn], int]:
    """The last `turns` finished turns of a session, oldest first, and the next turn number.
    A session is named by the id of its first answer; an unknown one is an input error."""
    async with db.session(tenant_id) as session:
        rows = (
            await session.execute(
                select(Answer.question, Answer.text, Answer.status, Answer.turn)
                .where(col(Answer.tenant_id) == tenant_id, col(Answer.session_id) == session_id)
                .order_by(col(Answer.turn).desc())
                .limit(turns * 2)
            )
        ).all()
    if not rows:
        raise InvalidInput(
            AnswerErrorCode.SESSION_NOT_FOUND,
            f"no answer session {session_id} here; omit sessionId to start one, then pass the sessionId it returns",
            field="options.sessionId",
        )
    done = [Turn(question=q, answer=t) for q, t, status, _ in rows if status == "done"][:turns]
    return list(reversed(done)), max(r[3] for r in rows) + 1


async def save(db: Database, record: Answer) -> None:
    await save_many(db, record.tenant_id, [record])


async def save_many(db: Database, tenant_id: str, records: list[Answer]) -> None:
    """One transaction of the tenant's. A Core INSERT, not `session.add`: the same round trip,
    without the ORM's unit of work at commit (as the query log does; issue 18). Answers are
    written once and never updated here."""
    async with db.session(tenant_id) as session:
        await session.execute(insert(Answer.__table__), [r.model_dump() for r in records])  # type: ignore[attr-defined]
