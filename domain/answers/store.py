"""Answers in the database: the record of each one, and the turns of a session."""

from __future__ import annotations

import json
import uuid

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


_COLUMNS = (
    "id", "tenant_id", "session_id", "turn", "question", "retrieval_query", "options", "sources", "text",
    "citations", "dropped_citations", "generator", "rerank", "status", "error_code", "prompt_tokens",
    "completion_tokens", "first_token_ms", "took_ms", "created_at",
)  # fmt: skip
_JSON = frozenset({"options", "sources"})
_INSERT = (
    "INSERT INTO answers (id, tenant_id, session_id, turn, question, retrieval_query, options, sources, text, "
    "citations, dropped_citations, generator, rerank, status, error_code, prompt_tokens, completion_tokens, "
    "first_token_ms, took_ms, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
)


async def save_many(db: Database, tenant_id: str, records: list[Answer]) -> None:
    """One transaction of the tenant's, on the bare asyncpg connection (as the query log is): no
    ORM unit of work, no SQLAlchemy statement work, no pre-ping (issue 18). asyncpg sends the rows
    as one pipelined exchange. Answers are written once and never updated here."""
    rows = [r.model_dump() for r in records]
    values = [[json.dumps(row[c]) if c in _JSON else row[c] for c in _COLUMNS] for row in rows]
    async with db.connection(tenant_id) as conn:
        await conn.executemany(_INSERT, values)
