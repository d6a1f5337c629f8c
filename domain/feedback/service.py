"""Submitting feedback: validate, store the event once, and update what is learned from it, all in
one transaction. Either the event and its effects are stored together, or nothing is.

Retries are safe with an idempotency key: same key and same request → the stored event comes back
(`duplicate=True`); same key, different request → IDEMPOTENCY_KEY_REUSED. Requests with one key
are serialised by a transaction-level advisory lock, so parallel duplicates cannot both insert; the
unique index on (tenant, key) is the backstop."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.error_codes import CommonErrorCode
from domain.errors import InvalidInput, NotFound
from domain.feedback import coengagement, profiles
from domain.feedback.error_codes import FeedbackErrorCode
from domain.feedback.kinds import ANSWER_KINDS, KINDS, LIKED_AT, Kind, weight
from domain.feedback.profiles import Event, LearningConfig
from domain.persistence.database import Database

MAX_USER_ID_CHARS = 200
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class FeedbackRequest:
    user_id: str
    kind: Kind
    document_id: uuid.UUID | None = None
    answer_id: uuid.UUID | None = None
    query_id: uuid.UUID | None = None
    rating: float | None = None
    idempotency_key: str | None = None
    # When the event happened, for imported history; live events take the time they arrive.
    occurred_at: datetime | None = None

    def fingerprint(self) -> str:
        body = {
            "user": self.user_id,
            "kind": self.kind,
            "document": str(self.document_id) if self.document_id else None,
            "answer": str(self.answer_id) if self.answer_id else None,
            "query": str(self.query_id) if self.query_id else None,
            "rating": self.rating,
        }
        if self.occurred_at is not None:
            body["at"] = self.occurred_at.isoformat()
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class FeedbackEvent:
    id: uuid.UUID
    seq: int
    user_id: str
    kind: Kind
    document_id: uuid.UUID | None
    answer_id: uuid.UUID | None
    query_id: uuid.UUID | None
    rating: float | None
    created_at: datetime


@dataclass(frozen=True)
class Submitted:
    event: FeedbackEvent
    duplicate: bool


def validate(req: FeedbackRequest) -> None:
    """Checks that need no database. Each names the input field and the fix."""
    if not req.user_id.strip():
        raise InvalidInput(
            CommonErrorCode.INVALID_USER_ID, "userId is empty; pass your app's id for the end user", field="userId"
        )
    if len(req.user_id) > MAX_USER_ID_CHARS:
        raise InvalidInput(
            CommonErrorCode.INVALID_USER_ID, f"userId is longer than {MAX_USER_ID_CHARS} characters", field="userId"
        )
    if req.kind not in KINDS:
        raise InvalidInput(FeedbackErrorCode.INVALID_FEEDBACK_KIND, f"unknown kind {req.kind!r}", field="kind")
    if req.document_id is not None and req.answer_id is not None:
        raise InvalidInput(
            FeedbackErrorCode.INVALID_FEEDBACK_TARGET,
            "give documentId or answerId, not both: one event has one target",
            field="answerId",
        )
    if req.kind in ANSWER_KINDS:
        if req.answer_id is None:
            raise InvalidInput(
                FeedbackErrorCode.KIND_TARGET_MISMATCH,
                f"{req.kind} rates an answer: pass answerId (documentId is for document feedback)",
                field="answerId" if req.document_id is None else "documentId",
            )
    elif req.document_id is None:
        raise InvalidInput(
            FeedbackErrorCode.KIND_TARGET_MISMATCH,
            f"{req.kind} is feedback on a document: pass documentId"
            + (" (answerId is only for ANSWER_HELPFUL / ANSWER_UNHELPFUL)" if req.answer_id else ""),
            field="documentId" if req.answer_id is None else "answerId",
        )
    if req.kind == "RATING":
        if req.rating is None:
            raise InvalidInput(
                FeedbackErrorCode.RATING_REQUIRED, "a RATING needs `rating`, from 0 to 5", field="rating"
            )
        if not math.isfinite(req.rating) or not 0.0 <= req.rating <= 5.0:
            raise InvalidInput(
                FeedbackErrorCode.RATING_OUT_OF_RANGE,
                f"rating must be between 0 and 5, got {req.rating}",
                field="rating",
            )
    elif req.rating is not None:
        raise InvalidInput(
            FeedbackErrorCode.RATING_NOT_ALLOWED,
            "`rating` is only for kind RATING; drop it or send kind RATING",
            field="rating",
        )
    if req.idempotency_key is not None and not 1 <= len(req.idempotency_key) <= MAX_KEY_CHARS:
        raise InvalidInput(
            FeedbackErrorCode.INVALID_IDEMPOTENCY_KEY,
            f"idempotencyKey must be 1 to {MAX_KEY_CHARS} characters (a UUID works well)",
            field="idempotencyKey",
        )


_COLUMNS = "id, seq, user_id, kind, document_id, answer_id, query_id, rating, created_at"


def _event(row: object) -> FeedbackEvent:
    return FeedbackEvent(*row)  # type: ignore[misc]


async def _by_key(session: AsyncSession, tenant_id: str, key: str) -> tuple[FeedbackEvent, str] | None:
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS}, request_hash FROM feedback WHERE tenant_id = :t AND idempotency_key = :k"),
            {"t": tenant_id, "k": key},
        )
    ).first()
    return None if row is None else (_event(row[:-1]), str(row[-1]))


async def _exists(session: AsyncSession, sql: str, tenant_id: str, ident: uuid.UUID) -> bool:
    return bool((await session.execute(text(sql), {"t": tenant_id, "i": ident})).scalar())


_QUERY_LOG_EXISTS = "SELECT EXISTS (SELECT 1 FROM query_log WHERE tenant_id = :t AND id = :i)"
# A search's query-log row is written just behind its response (domain/retrieval/query_log.py), by
# the worker process that served it. Feedback that lands on another worker a few milliseconds later
# may arrive before that row: wait for it this long (polling; READ COMMITTED sees each new commit)
# before calling the queryId unknown.
QUERY_LOG_GRACE_S = 2.0
_QUERY_LOG_POLL_S = 0.05


async def _query_logged(session: AsyncSession, tenant_id: str, ident: uuid.UUID, grace_s: float) -> bool:
    deadline = time.monotonic() + grace_s
    while not await _exists(session, _QUERY_LOG_EXISTS, tenant_id, ident):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_QUERY_LOG_POLL_S)
    return True


async def _check_targets(session: AsyncSession, tenant_id: str, req: FeedbackRequest, query_log_grace_s: float) -> None:
    checks = (
        (req.document_id, "SELECT EXISTS (SELECT 1 FROM documents WHERE tenant_id = :t AND id = :i)", "documentId"),
        (req.answer_id, "SELECT EXISTS (SELECT 1 FROM answers WHERE tenant_id = :t AND id = :i)", "answerId"),
    )
    for ident, sql, name in checks:
        if ident is not None and not await _exists(session, sql, tenant_id, ident):
            what = {"documentId": "document", "answerId": "answer"}[name]
            raise NotFound(f"no {what} with that id in this tenant", field=name)
    if req.query_id is not None and not await _query_logged(session, tenant_id, req.query_id, query_log_grace_s):
        raise NotFound("no search or recommendation with that id in this tenant", field="queryId")


# Told of each new document event once it has committed (the training trigger's counter); it must
# not block: it runs on the request's path.
OnStored = Callable[[str, int], None]


async def submit(
    db: Database, tenant_id: str, req: FeedbackRequest, config: LearningConfig, *, on_stored: OnStored | None = None
) -> Submitted:
    validate(req)
    async with db.session(tenant_id) as session:
        submitted = await record(session, tenant_id, req, config, query_log_grace_s=QUERY_LOG_GRACE_S)
    if on_stored is not None and not submitted.duplicate and req.document_id is not None:
        on_stored(tenant_id, 1)
    return submitted


async def record(
    session: AsyncSession,
    tenant_id: str,
    req: FeedbackRequest,
    config: LearningConfig,
    *,
    query_log_grace_s: float = 0.0,
) -> Submitted:
    """Store one validated event and learn from it inside the caller's transaction (a live submit,
    or one event of an import job: the same steps in the same order, so the two end alike). Only a
    live submit waits for a just-served search's query-log row; an import's events are history."""
    fingerprint = req.fingerprint()
    if req.idempotency_key is not None:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 2))"),
            {"k": f"{tenant_id}\x1f{req.idempotency_key}"},
        )
        found = await _by_key(session, tenant_id, req.idempotency_key)
        if found is not None:
            event, stored_hash = found
            if stored_hash != fingerprint:
                raise InvalidInput(
                    FeedbackErrorCode.IDEMPOTENCY_KEY_REUSED,
                    "this idempotencyKey was already used for a different feedback event; use a new key",
                    field="idempotencyKey",
                )
            return Submitted(event, duplicate=True)
    await _check_targets(session, tenant_id, req, query_log_grace_s)
    if req.kind in ANSWER_KINDS:
        await profiles.lock_user(session, tenant_id, req.user_id)
    if req.document_id is not None:
        # Events of one user are applied to the profile in the order they are inserted.
        await profiles.lock_user(session, tenant_id, req.user_id)
        likers_delta = await _update_verdict(session, tenant_id, req, req.document_id, config.co_engagement_window)
    row = (
        await session.execute(
            text(
                f"""
                INSERT INTO feedback (id, tenant_id, user_id, kind, document_id, answer_id, query_id, rating,
                                      idempotency_key, request_hash, created_at)
                VALUES (:id, :t, :u, :kind, :d, :a, :q, :r, :k, :h, coalesce(:at, clock_timestamp()))
                RETURNING {_COLUMNS}
                """
            ),
            {
                "id": uuid.uuid4(),
                "t": tenant_id,
                "u": req.user_id,
                "kind": req.kind,
                "d": req.document_id,
                "a": req.answer_id,
                "q": req.query_id,
                "r": req.rating,
                "k": req.idempotency_key,
                "h": fingerprint,
                "at": req.occurred_at,
            },
        )
    ).one()
    event = _event(row)
    if req.document_id is not None:
        await _learn(session, tenant_id, event, config)
        await coengagement.record_popularity(
            session,
            tenant_id,
            req.document_id,
            weight(req.kind, req.rating),
            likers_delta,
            config.popularity_half_life_days,
        )
    elif req.kind in ANSWER_KINDS:
        await _learn_from_answer(session, tenant_id, event, config)
    return Submitted(event, duplicate=False)


async def _update_verdict(
    session: AsyncSession, tenant_id: str, req: FeedbackRequest, document_id: uuid.UUID, window: int
) -> int:
    """Co-engagement follows the user's current verdict (the latest strong signal): a first like
    adds this user to the document's pairs, a later dislike takes them out again. Returns the
    change in the document's number of likers (-1, 0 or +1)."""
    w = weight(req.kind, req.rating)
    was_liked = await coengagement.currently_liked(session, tenant_id, req.user_id, document_id)
    liked = w > 0 if abs(w) >= LIKED_AT else was_liked
    if liked and not was_liked:
        await coengagement.add_like(session, tenant_id, req.user_id, document_id, window)
        return 1
    if was_liked and not liked:
        await coengagement.retract_like(session, tenant_id, req.user_id, document_id, window)
        return -1
    return 0


async def _learn(session: AsyncSession, tenant_id: str, event: FeedbackEvent, config: LearningConfig) -> None:
    current = await profiles.load(session, tenant_id, event.user_id) or profiles.Profile()
    item = await profiles.document_vector(session, tenant_id, event.document_id)
    updated = profiles.fold(current, Event(event.seq, event.kind, event.rating, event.created_at, item), config)
    await profiles.save(session, tenant_id, event.user_id, updated)


async def _learn_from_answer(
    session: AsyncSession, tenant_id: str, event: FeedbackEvent, config: LearningConfig
) -> None:
    events = await profiles.answer_events(session, tenant_id, event.id)
    if not events:
        return  # the answer cited no document (or only text the user selected)
    current = await profiles.load(session, tenant_id, event.user_id) or profiles.Profile()
    await profiles.save(session, tenant_id, event.user_id, profiles.replay_onto(current, events, config))


async def get(db: Database, tenant_id: str, event_id: uuid.UUID) -> FeedbackEvent | None:
    async with db.session(tenant_id) as session:
        row = (
            await session.execute(
                text(f"SELECT {_COLUMNS} FROM feedback WHERE tenant_id = :t AND id = :i"),
                {"t": tenant_id, "i": event_id},
            )
        ).first()
    return None if row is None else _event(row)
