"""What is learned from feedback, at the domain level: profiles and co-engagement rebuilt from the
events equal the incrementally kept ones; the decay and weight rules; tenants never share them;
MMR's trade-off."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.errors import NotFound
from domain.feedback import service as feedback
from domain.feedback.kinds import is_liked, weight
from domain.feedback.profiles import Event, LearningConfig, Profile, fold
from domain.feedback.rebuild import rebuild_tenant
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.recommendations.mmr import mmr
from domain.recommendations.service import Recommender, RecommendRequest
from domain.rerank.service import Reranking
from tests.conftest import ingest_docs

CONFIG = LearningConfig()
TOPICS = [
    ("Tide pools", "Starfish, anemones and crabs live in rocky tide pools between the tides."),
    ("Coral reefs", "Reef-building corals host fish and algae in warm shallow seas."),
    ("Deep sea vents", "Hydrothermal vents feed tube worms and bacteria far from sunlight."),
    ("Sourdough", "A sourdough starter of flour and water ferments with wild yeast before baking."),
    ("Pasta dough", "Fresh pasta is kneaded from eggs and flour, rested, then rolled thin."),
    ("Bread crust", "A hot oven and steam give bread a crisp, blistered crust."),
]


async def _catalogue(db: Database, embedder: LocalEmbedder, tenant: str) -> dict[str, uuid.UUID]:
    outcome = await ingest_docs(
        db, embedder, tenant, [DocumentInput(title=t, text=x, external_id=t) for t, x in TOPICS]
    )
    return {i.document.title: i.document.id for i in outcome.documents}


async def _submit(db: Database, tenant: str, user: str, doc: uuid.UUID, kind: Any, rating: float | None = None) -> None:
    request = feedback.FeedbackRequest(user_id=user, kind=kind, document_id=doc, rating=rating)
    await feedback.submit(db, tenant, request, CONFIG)


async def _derived(db: Database, tenant: str) -> tuple[dict[str, Any], dict[tuple[Any, Any], int]]:
    async with db.session(tenant) as session:
        profiles = {
            row[0]: (np.asarray(row[1].to_numpy()), row[2], row[3], row[4], row[5], row[6])
            for row in (
                await session.execute(
                    text(
                        "SELECT user_id, preference, events, positives, negatives, last_seq, last_event_at "
                        "FROM user_profiles WHERE tenant_id = :t"
                    ),
                    {"t": tenant},
                )
            ).all()
        }
        pairs = {
            (a, b): n
            for a, b, n in (
                await session.execute(
                    text("SELECT item_a, item_b, users FROM co_engagement WHERE tenant_id = :t"), {"t": tenant}
                )
            ).all()
        }
    return profiles, pairs


async def test_rebuild_reproduces_the_incremental_state_exactly(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    docs = await _catalogue(db, embedder, tenant)
    script = [
        ("ann", "Tide pools", "LIKE", None),
        ("ann", "Coral reefs", "WATCHED", None),
        ("ann", "Sourdough", "DISLIKE", None),
        ("ann", "Deep sea vents", "RATING", 4.5),
        ("bob", "Coral reefs", "LIKE", None),
        ("bob", "Tide pools", "RATING", 5.0),
        ("bob", "Pasta dough", "VIEW", None),
        ("bob", "Bread crust", "RATING", 1.0),
        ("cy", "Sourdough", "LIKE", None),
        ("cy", "Bread crust", "CLICK", None),
        ("cy", "Sourdough", "DISLIKE", None),
    ]
    for user, title, kind, rating in script:
        await _submit(db, tenant, user, docs[title], kind, rating)
    live_profiles, live_pairs = await _derived(db, tenant)
    assert set(live_profiles) == {"ann", "bob", "cy"}
    # ann and bob both liked Tide pools and Coral reefs; ann also Deep sea vents (rating 4.5).
    reefs, pools, vents = docs["Coral reefs"], docs["Tide pools"], docs["Deep sea vents"]
    assert live_pairs[(pools, reefs)] == live_pairs[(reefs, pools)] == 2
    assert live_pairs[(vents, pools)] == 1 and len(live_pairs) == 6

    # Damage the derived state, then rebuild it from the events alone.
    async with db.session(tenant) as session:
        await session.execute(text("DELETE FROM co_engagement WHERE tenant_id = :t"), {"t": tenant})
        await session.execute(
            text("UPDATE user_profiles SET preference = NULL, events = 0 WHERE tenant_id = :t"), {"t": tenant}
        )
    report = await rebuild_tenant(db, tenant, CONFIG)
    assert (report.users, report.pairs) == (3, 6)
    rebuilt_profiles, rebuilt_pairs = await _derived(db, tenant)
    assert rebuilt_pairs == live_pairs
    for user, live in live_profiles.items():
        rebuilt = rebuilt_profiles[user]
        assert np.array_equal(live[0], rebuilt[0]), user  # bit for bit, not approximately
        assert live[1:] == rebuilt[1:], user


async def test_profiles_and_co_engagement_stay_inside_their_tenant(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    async with db.session(other) as session:
        await session.execute(text("INSERT INTO tenants (id, name) VALUES (:t, :t)"), {"t": other})
    mine, theirs = await _catalogue(db, embedder, tenant), await _catalogue(db, embedder, other)
    for user in ("u1", "u2"):
        await _submit(db, tenant, user, mine["Tide pools"], "LIKE")
        await _submit(db, tenant, user, mine["Coral reefs"], "LIKE")
    # A document of the other tenant is not a valid target here.
    with pytest.raises(NotFound):
        await _submit(db, tenant, "u1", theirs["Sourdough"], "LIKE")

    recommender = Recommender(db=db, embedder=embedder, reranking=Reranking(), learning=CONFIG)
    # The same user id in the other tenant is a stranger: no profile, no co-engagement, only
    # that tenant's (rating-ordered) catalogue.
    result = await recommender.recommend(other, RecommendRequest(user_id="u1"))
    assert result.sources == ["POPULAR"]
    assert {item.document.tenant_id for item in result.items} == {other}
    profiles, pairs = await _derived(db, other)
    assert profiles == {} and pairs == {}
    # And in its own tenant, u1's co-engagement only ever names this tenant's documents.
    await _submit(db, tenant, "u3", mine["Tide pools"], "LIKE")
    own = await recommender.recommend(tenant, RecommendRequest(user_id="u3", strategy="COLLABORATIVE"))
    assert [i.document.title for i in own.items] == ["Coral reefs"]


def _event(seq: int, kind: Any, at: datetime, item: Any, rating: float | None = None) -> Event:
    return Event(seq, kind, rating, at, np.asarray(item, dtype=np.float32))


def test_weights_order_signals_and_ratings_map_linearly() -> None:
    assert weight("LIKE", None) > weight("WATCHED", None) > weight("CLICK", None) > weight("VIEW", None) > 0
    assert weight("DISLIKE", None) < 0 == weight("RATING", 2.5)
    assert weight("RATING", 5.0) == 1.0 and weight("RATING", 0.0) == -1.0
    assert is_liked("LIKE", None) and is_liked("RATING", 4.0) and not is_liked("RATING", 3.0)
    assert not is_liked("VIEW", None) and not is_liked("DISLIKE", None)


def test_fold_moves_toward_likes_away_from_dislikes_and_forgets_with_age() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    x, y = [1.0, 0.0], [0.0, 1.0]
    liked_x = fold(Profile(), _event(1, "LIKE", start, x), CONFIG)
    assert liked_x.preference is not None and liked_x.preference.tolist() == [1.0, 0.0]
    disliked_y = fold(liked_x, _event(2, "DISLIKE", start, y), CONFIG)
    assert disliked_y.preference is not None and disliked_y.preference.tolist() == [1.0, -1.0]
    assert (disliked_y.events, disliked_y.positives, disliked_y.negatives) == (2, 1, 1)
    # One half-life later, the old taste weighs half as much as a fresh like.
    later = start + timedelta(days=CONFIG.profile_half_life_days)
    fresh_y = fold(liked_x, _event(2, "LIKE", later, y), CONFIG)
    assert fresh_y.preference is not None
    assert np.allclose(fresh_y.preference, [0.5, 1.0])
    # A view nudges five times less than a like.
    viewed = fold(Profile(), _event(1, "VIEW", start, x), CONFIG)
    assert viewed.preference is not None and np.allclose(viewed.preference, [0.2, 0.0])


def test_mmr_trades_relevance_for_diversity() -> None:
    # Items 0 and 1 are near-duplicates and the most relevant; item 2 is different.
    vectors = np.array([[1.0, 0.0], [0.999, 0.045], [0.0, 1.0]], dtype=np.float32)
    relevance = np.array([1.0, 0.95, 0.6])
    assert mmr(relevance, vectors, 2, 0.0) == [0, 1]
    assert mmr(relevance, vectors, 2, 0.5) == [0, 2]
    assert mmr(relevance, vectors, 3, 0.5) == [0, 2, 1]
    assert mmr(np.array([]), np.zeros((0, 2), dtype=np.float32), 3, 0.5) == []


async def test_co_engagement_pairs_a_like_only_with_the_users_recent_likes(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    """With a window of 2, six likes in a row make the 9 neighbouring pairs, not all 15; a
    retraction in the middle bridges its two sides, and liking again appends at the end. Live and
    rebuilt agree exactly throughout."""
    docs = await _catalogue(db, embedder, tenant)
    order = [docs[t] for t, _ in TOPICS]
    narrow = LearningConfig(co_engagement_window=2)

    async def submit(doc: uuid.UUID, kind: str) -> None:
        request = feedback.FeedbackRequest(user_id="dee", kind=kind, document_id=doc)  # type: ignore[arg-type]
        await feedback.submit(db, tenant, request, narrow)

    def expected(likes: list[uuid.UUID]) -> dict[tuple[Any, Any], int]:
        return {(a, b): 1 for i, a in enumerate(likes) for j, b in enumerate(likes) if a != b and abs(i - j) <= 2}

    async def rebuilt() -> dict[tuple[Any, Any], int]:
        await rebuild_tenant(db, tenant, narrow)
        return (await _derived(db, tenant))[1]

    for doc in order:
        await submit(doc, "LIKE")
    live = (await _derived(db, tenant))[1]
    assert live == expected(order) and len(live) == 2 * 9  # both directions
    assert live == await rebuilt()

    await submit(order[2], "DISLIKE")  # 0 1 _ 3 4 5: 1 and 4 are now two apart
    remaining = [order[i] for i in (0, 1, 3, 4, 5)]
    live = (await _derived(db, tenant))[1]
    assert live == expected(remaining) and (order[1], order[4]) in live
    assert live == await rebuilt()

    await submit(order[2], "LIKE")  # back, as the newest like
    live = (await _derived(db, tenant))[1]
    assert live == expected([*remaining, order[2]])
    assert live == await rebuilt()
