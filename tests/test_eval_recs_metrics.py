"""The pure parts of `make eval-recs`: ranking metrics, the seeded simulation and the offline
baselines' scoring. No database."""

from __future__ import annotations

import numpy as np
import pytest

from bench.eval_recs import feedback_input
from bench.recs_baselines import evaluate, user_items
from bench.recs_sim import (
    LIKED_RATING,
    Catalogue,
    SimUser,
    hit_at,
    make_catalogue,
    ndcg_at,
    rank_of,
    simulate_users,
    timeline,
)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return make_catalogue(1500, seed=0)


@pytest.fixture(scope="module")
def sim(catalogue: Catalogue) -> list[SimUser]:
    return simulate_users(catalogue, users=300, seed=7)


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


def test_simulation_is_deterministic_for_a_seed(catalogue: Catalogue) -> None:
    a, b = make_catalogue(300, seed=0), make_catalogue(300, seed=0)
    assert a.items == b.items and np.array_equal(a.factors, b.factors) and np.array_equal(a.popularity, b.popularity)
    first = simulate_users(catalogue, users=30, seed=5)
    assert first == simulate_users(catalogue, users=30, seed=5)
    assert first != simulate_users(catalogue, users=30, seed=6)


def test_item_popularity_is_long_tailed(catalogue: Catalogue, sim: list[SimUser]) -> None:
    counts = np.bincount([e.item for u in sim for e in u.history], minlength=len(catalogue.items))
    ordered = np.sort(counts)[::-1]
    top_share = ordered[: len(ordered) // 100].sum() / ordered.sum()
    bottom_share = ordered[len(ordered) // 2 :].sum() / ordered.sum()
    assert top_share > 0.1  # the top 1% of items take ten times their share of the events
    assert bottom_share < 0.2  # and the less popular half of the catalogue a small part


def test_the_held_out_item_is_each_users_last_like_and_never_sent(sim: list[SimUser]) -> None:
    for user in sim:
        sent = [e.item for e in user.history]
        assert user.held_out not in sent
        assert len(set(sent)) == len(sent)  # one interaction per item
        assert any(e.liked for e in user.history)  # something to learn from
        assert [e.at for e in user.history] == sorted(e.at for e in user.history)


def test_ratings_are_noisy_half_stars_and_views_have_none(sim: list[SimUser]) -> None:
    ratings = [e.rating for u in sim for e in u.history if e.rating is not None]
    assert set(ratings) <= {x / 2 for x in range(1, 11)}
    assert len(set(ratings)) >= 8  # the whole scale is used, not just likes
    share_liked = np.mean([r >= LIKED_RATING for r in ratings])
    assert 0.2 < share_liked < 0.8
    views = [e for u in sim for e in u.history if e.rating is None]
    assert views and not any(e.liked for e in views)


def test_users_differ_in_activity_and_taste(catalogue: Catalogue, sim: list[SimUser]) -> None:
    lengths = [len(u.history) for u in sim]
    assert max(lengths) > 4 * np.median(lengths)  # long-tailed activity
    # Two users' histories overlap less than two halves of one user's history do: tastes differ.
    halves = []
    for user in sim[:100]:
        items = [e.item for e in user.history]
        first, second = catalogue.factors[items[: len(items) // 2]], catalogue.factors[items[len(items) // 2 :]]
        halves.append(float(first.mean(0) @ second.mean(0)))
    strangers = [
        float(
            catalogue.factors[[e.item for e in a.history]].mean(0)
            @ catalogue.factors[[e.item for e in b.history]].mean(0)
        )
        for a, b in zip(sim[:100], sim[100:200], strict=True)
    ]
    assert np.mean(halves) > 1.5 * np.mean(strangers)


def test_the_timeline_interleaves_users_in_time_order(sim: list[SimUser]) -> None:
    flat = timeline(sim)
    assert len(flat) == sum(len(u.history) for u in sim)
    assert [e.at for _, _, e in flat] == sorted(e.at for _, _, e in flat)
    assert len({u.user_id for u, _, _ in flat[:200]}) > 10  # users interleaved, not one after another
    keys = [feedback_input(u, n, e, [f"doc-{i}" for i in range(1500)])["idempotencyKey"] for u, n, e in flat]
    assert len(keys) == len(set(keys))


def test_feedback_input_sends_a_rating_or_a_view(sim: list[SimUser]) -> None:
    ids = [f"doc-{i}" for i in range(1500)]
    for n, event in enumerate(sim[0].history):
        payload = feedback_input(sim[0], n, event, ids)
        assert payload["documentId"] == ids[event.item]
        assert payload["kind"] == ("RATING" if event.rating is not None else "VIEW")
        assert payload.get("rating") == event.rating


def test_offline_scoring_never_counts_seen_items(catalogue: Catalogue, sim: list[SimUser]) -> None:
    users = sim[:20]
    seen = user_items(users, len(catalogue.items), 1.0)
    # A ranker that puts every user's held-out item first hits everyone ...
    perfect = np.zeros((len(users), len(catalogue.items)))
    perfect[np.arange(len(users)), [u.held_out for u in users]] = 1.0
    assert evaluate(users, perfect, seen).hit == 1.0
    # ... and one that only ranks what they already saw scores nothing: seen items are excluded.
    cheating = np.asarray(seen.todense(), dtype=np.float64) * 10 + perfect
    cheating[np.arange(len(users)), [u.held_out for u in users]] = 0.0
    outcome = evaluate(users, cheating, seen)
    assert outcome.hit < 0.5 and 0 < outcome.coverage <= 1
