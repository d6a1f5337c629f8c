"""The pure parts of `make eval-recs`: ranking metrics and the seeded user simulation. No database."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from bench.eval_recs import (
    Film,
    SimUser,
    feedback_input,
    genre_weights,
    group_by_genre,
    hit_at,
    interleave,
    ndcg_at,
    rank_of,
    sample_taste,
    simulate_users,
)

DEMO = Path(__file__).resolve().parents[1] / "domain" / "demo" / "films.jsonl"
LIKED_KINDS = {"LIKE", "WATCHED", "RATING"}


def demo_films() -> list[Film]:
    """The real demo catalogue, with the external id standing in for the database id."""
    rows = [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]
    return [Film(r["externalId"], r["externalId"], r["title"], r["metadata"]["genre"]) for r in rows]


@pytest.fixture(scope="module")
def sim() -> list[SimUser]:
    return simulate_users(demo_films(), users=200, seed=7)[0]


@pytest.mark.parametrize(
    ("rank", "hit", "ndcg"),
    [
        (1, 1.0, 1.0),
        (3, 1.0, 0.5),
        (10, 1.0, 1 / 3.4594316186372973),  # log2(11)
        (11, 0.0, 0.0),  # ranked, but past the cut-off
        (None, 0.0, 0.0),
    ],
)
def test_hit_and_ndcg_from_rank(rank: int | None, hit: float, ndcg: float) -> None:
    assert hit_at(rank) == hit
    assert ndcg_at(rank) == pytest.approx(ndcg)


@pytest.mark.parametrize(
    ("target", "ranked", "expected"),
    [("b", ["a", "b", "c"], 2), ("a", ["a"], 1), ("z", ["a", "b"], None), ("a", [], None)],
)
def test_rank_of(target: str, ranked: list[str], expected: int | None) -> None:
    assert rank_of(target, ranked) == expected


def test_genre_weights_follow_the_skew_whatever_the_input_order() -> None:
    genres = ["a", "b", "c", "d"]
    forward = genre_weights(genres, random.Random(3))
    backward = genre_weights(list(reversed(genres)), random.Random(3))
    assert forward == backward
    assert sorted(forward.values(), reverse=True) == pytest.approx([1 / (r + 1) ** 0.8 for r in range(4)])


def test_taste_is_distinct_and_skewed_towards_heavy_genres() -> None:
    rng = random.Random(11)
    weights = {"heavy": 1.0, "mid": 0.3, "light": 0.05}
    draws = [sample_taste(weights, rng) for _ in range(2000)]
    assert all(len(t) == 2 and len(set(t)) == 2 for t in draws)
    counts = Counter(g for t in draws for g in t)
    assert counts["heavy"] > counts["mid"] > counts["light"]


def test_simulation_is_deterministic_for_a_seed() -> None:
    films = demo_films()
    first, _ = simulate_users(films, users=20, seed=5)
    again, _ = simulate_users(list(reversed(films)), users=20, seed=5)
    other, _ = simulate_users(films, users=20, seed=6)
    assert first == again
    assert first != other


def test_each_user_holds_out_exactly_one_liked_film_it_gives_no_feedback_on(sim: list[SimUser]) -> None:
    for user in sim:
        targets = {e.document_id for e in user.events}
        assert user.held_out in user.liked
        assert user.held_out not in targets
        # every other liked film gets exactly one liking event
        liked_events = [e.document_id for e in user.events if e.kind in LIKED_KINDS]
        assert sorted(liked_events) == sorted(user.liked - {user.held_out})


def test_views_and_dislike_fall_outside_the_liked_set(sim: list[SimUser]) -> None:
    for user in sim:
        views = [e.document_id for e in user.events if e.kind == "VIEW"]
        dislikes = [e.document_id for e in user.events if e.kind == "DISLIKE"]
        assert len(views) == len(set(views)) == 3
        assert len(dislikes) == 1
        assert not set(views) & user.liked
        assert dislikes[0] not in user.liked
        assert dislikes[0] not in views


def test_liked_set_is_the_taste_plus_one_film_from_elsewhere(sim: list[SimUser]) -> None:
    genre_of = {f.id: f.genre for f in demo_films()}
    for user in sim:
        outside = [doc for doc in user.liked if genre_of[doc] not in user.taste]
        assert len(user.taste) == 2
        assert len(outside) == 1


def test_ratings_are_four_or_five_and_only_on_rating_events(sim: list[SimUser]) -> None:
    events = [e for user in sim for e in user.events]
    assert {e.rating for e in events if e.kind == "RATING"} <= {4.0, 5.0}
    assert all(e.rating is None for e in events if e.kind != "RATING")
    kinds = Counter(e.kind for e in events if e.kind in LIKED_KINDS)
    # 50/30/20 split, loosely: thousands of events
    assert kinds["LIKE"] > kinds["WATCHED"] > kinds["RATING"] > 0


def test_interleaving_keeps_every_event_and_idempotency_keys_are_unique(sim: list[SimUser]) -> None:
    flat = interleave(sim, random.Random(1))
    assert len(flat) == sum(len(u.events) for u in sim)
    assert [u.user_id for u, _, _ in flat[:50]] != sorted(u.user_id for u, _, _ in flat[:50])
    keys = [feedback_input(u, n, e)["idempotencyKey"] for u, n, e in flat]
    assert len(keys) == len(set(keys))


def test_feedback_input_sends_rating_only_with_rating(sim: list[SimUser]) -> None:
    user = sim[0]
    for n, event in enumerate(user.events):
        payload = feedback_input(user, n, event)
        assert payload["userId"] == user.user_id
        assert ("rating" in payload) == (event.kind == "RATING")


def test_genre_groups_cover_the_catalogue() -> None:
    films = demo_films()
    groups = group_by_genre(films)
    assert sum(len(g) for g in groups.values()) == len(films)
    assert all(g == sorted(g, key=lambda f: f.external_id) for g in groups.values())
