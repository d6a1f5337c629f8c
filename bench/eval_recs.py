"""`make eval-recs`: recommendation quality measured through the GraphQL API. Figures, not assertions.

Simulated users with a hidden two-genre taste give feedback on the demo catalogue; one liked film per
user is held out (leave-one-out) and each strategy is scored on whether it brings that film back in
its top 10 (hit@10, nDCG@10). The app runs in-process on a temporary embedded store, so nothing here
listens on a port."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from api import embedded
from bench.stats import percentile

K = 10
PAGE = 100
CONCURRENCY = 8
# Genre popularity follows a Zipf-like curve, so a popularity baseline has something to exploit
# and collaborative filtering has to beat it on the long tail.
ZIPF_EXPONENT = 0.8
TASTE_GENRES = 2
LIKE_PROBABILITY = 0.85
VIEWS = 3
STRATEGIES = ("popular", "collaborative", "content", "blended")

DOCUMENTS = """
query($after: String) {
  documents(first: 100, after: $after) {
    edges { node { id externalId title genre } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
SUBMIT_FEEDBACK = """
mutation($input: FeedbackInput!) {
  submitFeedback(input: $input) { feedback { id } duplicate errors { code field message } }
}
"""
RECOMMENDATIONS = """
query($u: ID, $first: Int!, $options: RecommendationOptions) {
  recommendations(userId: $u, first: $first, options: $options) {
    items { document { id } score reasons }
    strategy queryId tookMs
  }
}
"""


class EvalError(RuntimeError):
    """The API refused or failed a call: the figures would be meaningless, so the run stops."""


@dataclass(frozen=True)
class Film:
    id: str
    external_id: str
    title: str
    genre: str


@dataclass(frozen=True)
class Event:
    kind: str
    document_id: str
    rating: float | None = None


@dataclass(frozen=True)
class SimUser:
    user_id: str
    taste: tuple[str, ...]
    liked: frozenset[str]
    held_out: str
    events: tuple[Event, ...]


# --- pure parts: metrics and the simulation (unit-tested in tests/test_eval_recs_metrics.py) ---


def rank_of(target: str, ranked_ids: Sequence[str]) -> int | None:
    """1-based position of `target` in `ranked_ids`, or None when it is absent."""
    for position, doc_id in enumerate(ranked_ids, start=1):
        if doc_id == target:
            return position
    return None


def hit_at(rank: int | None, k: int = K) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def ndcg_at(rank: int | None, k: int = K) -> float:
    """With a single relevant item the ideal DCG is 1, so nDCG is just its discounted gain."""
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


def genre_weights(genres: Iterable[str], rng: random.Random) -> dict[str, float]:
    """Shuffle the genres and give rank r the weight 1/(r+1)^0.8. Sorted first so the result
    depends on the seed only, not on the order the catalogue came back in."""
    ordered = sorted(genres)
    rng.shuffle(ordered)
    return {genre: 1.0 / (rank + 1) ** ZIPF_EXPONENT for rank, genre in enumerate(ordered)}


def sample_taste(weights: dict[str, float], rng: random.Random, k: int = TASTE_GENRES) -> tuple[str, ...]:
    """`k` distinct genres, each draw proportional to weight among those not drawn yet."""
    remaining = dict(weights)
    taste: list[str] = []
    for _ in range(min(k, len(remaining))):
        genres = list(remaining)
        chosen = rng.choices(genres, weights=[remaining[g] for g in genres])[0]
        taste.append(chosen)
        del remaining[chosen]
    return tuple(taste)


def group_by_genre(films: Iterable[Film]) -> dict[str, list[Film]]:
    """Films sorted by external id inside each genre: stable across runs, unlike database ids."""
    groups: dict[str, list[Film]] = defaultdict(list)
    for film in sorted(films, key=lambda f: f.external_id):
        groups[film.genre].append(film)
    return dict(groups)


def _liked_event(document_id: str, rng: random.Random) -> Event:
    draw = rng.random()
    if draw < 0.5:
        return Event("LIKE", document_id)
    if draw < 0.8:
        return Event("WATCHED", document_id)
    return Event("RATING", document_id, float(rng.choice((4, 5))))


def simulate_user(
    index: int, seed: int, by_genre: dict[str, list[Film]], weights: dict[str, float], rng: random.Random
) -> SimUser:
    taste = sample_taste(weights, rng)
    liked = [f.id for g in taste for f in by_genre[g] if rng.random() < LIKE_PROBABILITY]
    # One film outside the taste: real users are not perfectly consistent, and this is what the
    # content strategy cannot predict from genre alone.
    others = [f.id for g in sorted(by_genre) if g not in taste for f in by_genre[g]]
    liked.append(rng.choice(others))
    held_out = rng.choice(liked)
    events = [_liked_event(doc_id, rng) for doc_id in liked if doc_id != held_out]
    liked_ids = set(liked)
    not_liked = [f.id for g in sorted(by_genre) for f in by_genre[g] if f.id not in liked_ids]
    viewed = rng.sample(not_liked, VIEWS)
    events += [Event("VIEW", doc_id) for doc_id in viewed]
    disliked = rng.choice([doc_id for doc_id in not_liked if doc_id not in viewed])
    events.append(Event("DISLIKE", disliked))
    return SimUser(f"sim-{seed}-{index}", taste, frozenset(liked), held_out, tuple(events))


def simulate_users(films: Iterable[Film], *, users: int, seed: int) -> tuple[list[SimUser], random.Random]:
    """The users, and the rng in the state they leave it in (the feedback shuffle continues it)."""
    rng = random.Random(seed)
    by_genre = group_by_genre(films)
    weights = genre_weights(by_genre, rng)
    return [simulate_user(i, seed, by_genre, weights, rng) for i in range(users)], rng


def interleave(sim: Sequence[SimUser], rng: random.Random) -> list[tuple[SimUser, int, Event]]:
    """Every user's events in one shuffled list, as they would arrive live: co-engagement builds up
    across users instead of one user at a time. The int numbers the event within its user."""
    flat = [(user, n, event) for user in sim for n, event in enumerate(user.events)]
    rng.shuffle(flat)
    return flat


def feedback_input(user: SimUser, n: int, event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "userId": user.user_id,
        "documentId": event.document_id,
        "kind": event.kind,
        "idempotencyKey": f"{user.user_id}-{n}",
    }
    if event.rating is not None:
        payload["rating"] = event.rating
    return payload


# --- the API side ---


async def _graphql(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or body.get("errors") or not body.get("data"):
        raise EvalError(f"GraphQL call failed ({response.status_code}): {body.get('errors') or response.text[:500]}")
    data: dict[str, Any] = body["data"]
    return data


async def fetch_catalogue(client: httpx.AsyncClient) -> list[Film]:
    films: list[Film] = []
    after: str | None = None
    while True:
        page = (await _graphql(client, DOCUMENTS, {"after": after}))["documents"]
        films += [
            Film(e["node"]["id"], e["node"]["externalId"] or e["node"]["id"], e["node"]["title"], e["node"]["genre"])
            for e in page["edges"]
            if e["node"]["genre"]  # a film without a genre cannot belong to anyone's taste
        ]
        if not page["pageInfo"]["hasNextPage"]:
            return films
        after = page["pageInfo"]["endCursor"]


async def submit_all(client: httpx.AsyncClient, flat: Sequence[tuple[SimUser, int, Event]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    with tqdm(total=len(flat), desc="feedback", unit="event", file=sys.stderr) as bar:

        async def submit(user: SimUser, n: int, event: Event) -> None:
            async with gate:
                data = await _graphql(client, SUBMIT_FEEDBACK, {"input": feedback_input(user, n, event)})
            errors = data["submitFeedback"]["errors"]
            if errors:
                raise EvalError(f"submitFeedback refused {event} for {user.user_id}: {errors}")
            bar.update()

        # Tasks start in list order and the semaphore admits them in turn, so the shuffle is what
        # the server sees, give or take the eight in flight. A task group cancels the rest at the
        # first failure instead of letting thousands of calls run on against a broken server.
        async with asyncio.TaskGroup() as group:
            for user, n, event in flat:
                group.create_task(submit(user, n, event))


async def score_strategy(
    client: httpx.AsyncClient, sim: Sequence[SimUser], strategy: str
) -> tuple[float, float, list[float]]:
    """Mean hit@10 and nDCG@10 over users, and the server-side tookMs of every call. Calls run one
    at a time so that tookMs is not inflated by our own concurrency."""
    hits: list[float] = []
    gains: list[float] = []
    took: list[float] = []
    for user in tqdm(sim, desc=f"recs {strategy}", unit="user", file=sys.stderr):
        variables = {"u": user.user_id, "first": K, "options": {"strategy": strategy.upper()}}
        result = (await _graphql(client, RECOMMENDATIONS, variables))["recommendations"]
        rank = rank_of(user.held_out, [item["document"]["id"] for item in result["items"]])
        hits.append(hit_at(rank))
        gains.append(ndcg_at(rank))
        took.append(float(result["tookMs"]))
    return sum(hits) / len(hits), sum(gains) / len(gains), took


# The blend grid for `--sweep`: run it on a tuning seed, never on the reported one.
SWEEP_CONTENT = (0.0, 0.25, 0.5, 1.0)
SWEEP_CO = (1.0,)
SWEEP_POPULAR = (0.0, 0.3, 0.6)


async def sweep_blend(app: Any, client: httpx.AsyncClient, sim: Sequence[SimUser]) -> None:
    """Score BLENDED under each weight combination, on the same feedback state."""
    from dataclasses import replace

    recommender = app.state.services.recommender
    default = recommender.weights
    grid = [(c, co, p) for c in SWEEP_CONTENT for co in SWEEP_CO for p in SWEEP_POPULAR]
    try:
        for content, co, popular in grid:
            recommender.weights = replace(default, content=content, co_engagement=co, popular=popular)
            hit, ndcg, _ = await score_strategy(client, sim, "blended")
            print(
                f"sweep content={content} co={co} popular={popular} hit@10={hit:.4f} ndcg@10={ndcg:.4f}",
                flush=True,
            )
    finally:
        recommender.weights = default


async def _run(
    url: str, root: Path, *, users: int, seed: int, strategies: Sequence[str], sweep: bool = False
) -> dict[str, tuple[float, float]]:
    # Imported here so that the pure functions above load without the app (for their unit tests).
    from api.app import create_app
    from api.settings import Settings

    # One INFO line per request from httpx would bury the progress bars and the figures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The simulation is one client sending thousands of requests: rate limits would only slow it.
    unlimited: dict[str, Any] = {"rate_per_ip": 10**9, "tenant_quota": 10**9, "admission_per_ip_per_s": 10**6}
    app = create_app(Settings(database_url=url, data_dir=root, load_demo=True, **unlimited))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://eval", timeout=120) as client,
    ):
        films = await fetch_catalogue(client)
        sim, rng = simulate_users(films, users=users, seed=seed)
        flat = interleave(sim, rng)
        started = time.perf_counter()
        await submit_all(client, flat)
        elapsed = time.perf_counter() - started
        print(
            f"recs users={users} seed={seed} catalogue={len(films)} films "
            f"feedback={len(flat)} events in {elapsed:.1f}s",
            flush=True,
        )
        if sweep:
            await sweep_blend(app, client, sim)
        results: dict[str, tuple[float, float]] = {}
        latencies: dict[str, list[float]] = {}
        for strategy in strategies:
            hit, ndcg, took = await score_strategy(client, sim, strategy)
            results[strategy] = (hit, ndcg)
            latencies[strategy] = took
    for strategy, (hit, ndcg) in results.items():
        print(f"recs {strategy} hit@10={hit:.4f} ndcg@10={ndcg:.4f}")
    for strategy, took in latencies.items():
        print(
            f"recs {strategy} latency p50={percentile(took, 50):.1f}ms p95={percentile(took, 95):.1f}ms "
            f"(server side, first={K}, n={len(took)})"
        )
    return results


def run_recs_eval(
    *, users: int = 300, seed: int = 7, strategies: Sequence[str] = STRATEGIES, sweep: bool = False
) -> dict[str, tuple[float, float]]:
    """(hit@10, nDCG@10) per strategy, printed as well."""
    with embedded.temporary("ragql-eval-recs-") as (root, url):
        return asyncio.run(_run(url, root, users=users, seed=seed, strategies=strategies, sweep=sweep))
