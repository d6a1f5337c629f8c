"""Per-user preference profiles, derived from feedback events.

The preference vector is a decayed, signed sum of the vectors of the documents a user reacted to:
each event first decays the old vector by its age (half-life `half_life_days`), then adds
weight × the document's unit vector. A like pulls toward an item, a dislike pushes away, a view
nudges. Both the live path (one event, in the event's own transaction) and `rebuild` use `fold`,
rounding to float32 after every step as the stored column does, so a rebuild reproduces the live
state exactly rather than approximately."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.kinds import Kind, weight

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LearningConfig:
    profile_half_life_days: float = 30.0
    popularity_half_life_days: float = 14.0
    popularity_window_days: float = 90.0
    # Co-engagement pairs a like with the user's previous N likes only (feedback/coengagement.py).
    co_engagement_window: int = 50


@dataclass
class Profile:
    preference: Vector | None = None
    events: int = 0
    positives: int = 0
    negatives: int = 0
    last_seq: int = 0
    last_event_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    seq: int
    kind: Kind
    rating: float | None
    created_at: datetime
    item: Vector | None  # the document's vector; None if the document has none (or is gone)


def as_vector(value: Any) -> Vector:
    """A stored pgvector value (the driver returns its own Vector type) as a float32 array."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def unit(v: Any) -> Vector:
    arr = as_vector(v)
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 0 else arr


def fold(profile: Profile, event: Event, config: LearningConfig) -> Profile:
    """The profile after one more event. Pure: the same events in the same order give the same
    profile, bit for bit."""
    w = weight(event.kind, event.rating)
    preference = profile.preference
    if event.item is not None and w != 0.0:
        step = np.float64(w) * unit(event.item).astype(np.float64)
        if preference is None:
            preference = step.astype(np.float32)
        else:
            age_s = 0.0
            if profile.last_event_at is not None:
                age_s = max(0.0, (event.created_at - profile.last_event_at).total_seconds())
            decay = math.pow(0.5, age_s / (config.profile_half_life_days * 86400.0))
            preference = (preference.astype(np.float64) * decay + step).astype(np.float32)
    return Profile(
        preference=preference,
        events=profile.events + 1,
        positives=profile.positives + (w > 0),
        negatives=profile.negatives + (w < 0),
        last_seq=event.seq,
        last_event_at=event.created_at,
    )


def replay(events: Iterable[Event], config: LearningConfig) -> Profile:
    return replay_onto(Profile(), events, config)


def replay_onto(profile: Profile, events: Iterable[Event], config: LearningConfig) -> Profile:
    for event in events:
        profile = fold(profile, event, config)
    return profile


async def lock_user(session: AsyncSession, tenant_id: str, user_id: str) -> None:
    """Serialise one user's profile updates (live events and rebuilds) until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 1))"), {"k": f"{tenant_id}\x1f{user_id}"}
    )


async def load(session: AsyncSession, tenant_id: str, user_id: str) -> Profile | None:
    row = (
        await session.execute(
            text(
                "SELECT preference, events, positives, negatives, last_seq, last_event_at FROM user_profiles "
                "WHERE tenant_id = :t AND user_id = :u"
            ),
            {"t": tenant_id, "u": user_id},
        )
    ).first()
    if row is None:
        return None
    preference = None if row[0] is None else as_vector(row[0])
    return Profile(preference, row[1], row[2], row[3], row[4], row[5])


async def save(session: AsyncSession, tenant_id: str, user_id: str, profile: Profile) -> None:
    await session.execute(
        text(
            """
            INSERT INTO user_profiles (tenant_id, user_id, preference, events, positives, negatives, last_seq,
                                       last_event_at)
            VALUES (:t, :u, :p, :e, :pos, :neg, :seq, :at)
            ON CONFLICT (tenant_id, user_id) DO UPDATE SET
                preference = EXCLUDED.preference, events = EXCLUDED.events, positives = EXCLUDED.positives,
                negatives = EXCLUDED.negatives, last_seq = EXCLUDED.last_seq, last_event_at = EXCLUDED.last_event_at
            """
        ),
        {
            "t": tenant_id,
            "u": user_id,
            "p": profile.preference,
            "e": profile.events,
            "pos": profile.positives,
            "neg": profile.negatives,
            "seq": profile.last_seq,
            "at": profile.last_event_at,
        },
    )


async def document_vector(session: AsyncSession, tenant_id: str, document_id: Any) -> Vector | None:
    value = (
        await session.execute(
            text("SELECT embedding FROM document_vectors WHERE tenant_id = :t AND document_id = :d"),
            {"t": tenant_id, "d": document_id},
        )
    ).scalar()
    return None if value is None else as_vector(value)


# An answer's rating reaches each document the answer cited (its sources whose number is in
# `citations`), in the sources' order; live updates and rebuilds read the same rows.
_CITED = """
    SELECT f.seq, f.kind, f.rating, f.created_at, v.embedding, s.ord
    FROM feedback f JOIN answers a ON a.id = f.answer_id AND a.tenant_id = f.tenant_id
    CROSS JOIN LATERAL jsonb_array_elements(a.sources) WITH ORDINALITY s(src, ord)
    LEFT JOIN document_vectors v ON v.document_id = (s.src->>'documentId')::uuid
    WHERE f.tenant_id = :t AND f.kind IN ('ANSWER_HELPFUL', 'ANSWER_UNHELPFUL')
      AND s.src ? 'documentId' AND (s.src->>'n')::int = ANY(a.citations)
"""


def _events(rows: Any) -> list[Event]:
    return [
        Event(seq, kind, rating, created_at, None if emb is None else as_vector(emb))
        for seq, kind, rating, created_at, emb, _ in rows.all()
    ]


async def user_events(session: AsyncSession, tenant_id: str, user_id: str) -> list[Event]:
    """A user's document events in the order they were applied, with each document's vector; an
    answer rating is one event per cited document."""
    rows = await session.execute(
        text(
            f"""
            SELECT f.seq, f.kind, f.rating, f.created_at, v.embedding, 0 AS ord
            FROM feedback f LEFT JOIN document_vectors v ON v.document_id = f.document_id
            WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id IS NOT NULL
            UNION ALL
            {_CITED} AND f.user_id = :u
            ORDER BY 1, 6
            """
        ),
        {"t": tenant_id, "u": user_id},
    )
    return _events(rows)


async def answer_events(session: AsyncSession, tenant_id: str, feedback_id: Any) -> list[Event]:
    """One answer rating as events on the documents the answer cited."""
    rows = await session.execute(text(f"{_CITED} AND f.id = :id ORDER BY s.ord"), {"t": tenant_id, "id": feedback_id})
    return _events(rows)


async def rebuild_user(session: AsyncSession, tenant_id: str, user_id: str, config: LearningConfig) -> Profile:
    """Recompute one user's profile from their events, under the same lock as live updates."""
    await lock_user(session, tenant_id, user_id)
    profile = replay(await user_events(session, tenant_id, user_id), config)
    await save(session, tenant_id, user_id, profile)
    return profile
