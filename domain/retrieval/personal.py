"""Personalised ranking: the user's learned preference vector (from feedback, domain/feedback/
profiles.py) re-orders the head of the fused list.

Both signals are min-max normalised over that head and blended with `weight`, so the blend means
the same whichever fusion method produced the list. A user with no profile (or a zero vector)
gets the plain ranking and the result says `personalized: false`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback import profiles
from domain.retrieval.fusion import minmax

# How deep into the fused list the profile may reach: it re-orders what the query found, it does
# not bring in documents the query did not.
HEAD = 100
DEFAULT_WEIGHT = 0.3


@dataclass(frozen=True)
class Personalize:
    user_id: str
    weight: float = DEFAULT_WEIGHT


async def preference(session: AsyncSession, tenant_id: str, user_id: str) -> profiles.Vector | None:
    profile = await profiles.load(session, tenant_id, user_id)
    if profile is None or profile.preference is None:
        return None
    if float(np.linalg.norm(profile.preference)) == 0.0:
        return None
    return profiles.unit(profile.preference)


async def affinities(
    session: AsyncSession, tenant_id: str, user_vector: profiles.Vector, doc_ids: list[uuid.UUID]
) -> dict[uuid.UUID, float]:
    """Cosine between the user's preference and each document's vector (documents without one are
    left out)."""
    if not doc_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT document_id, 1 - (embedding <=> CAST(:v AS vector)) FROM document_vectors "
            "WHERE tenant_id = :t AND document_id = ANY(:ids)"
        ),
        {"v": user_vector, "t": tenant_id, "ids": doc_ids},
    )
    return {d: float(s) for d, s in rows.all()}


def blend(fused: dict[uuid.UUID, float], personal: dict[uuid.UUID, float], weight: float) -> dict[uuid.UUID, float]:
    nf, npers = minmax(fused), minmax(personal)
    return {d: (1 - weight) * nf[d] + weight * npers.get(d, 0.0) for d in fused}
