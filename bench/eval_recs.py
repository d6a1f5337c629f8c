"""`make eval-recs`: recommendation quality measured through the GraphQL API. Figures, not assertions.

The simulated users of `bench/recs_sim.py` (power-law popularity, latent-factor tastes, noisy ratings
with a per-user bias, time-ordered sessions) replay their histories through `submitFeedback` on a
catalogue ingested through `ingestDocuments`; each user's last liked item is held out. Each
strategy is asked for 10 items and scored on whether it brings that item back (hit@10, nDCG@10),
and how much of the catalogue all the lists together cover. The classic baselines
(`bench/recs_baselines.py`) are computed by the client from the same events. BLENDED is measured
before the model is trained (content, co-engagement and popularity only) and after
(`train_tenant`, the job `ragql train-recs` runs).

With `--autotrain` nothing trains explicitly: the app runs its in-process worker, and the trainings
are the ones the feedback trigger queues while the events are replayed (RAGQL_RECS_AUTOTRAIN_*,
read from the environment like any setting). After the replay the run waits, through the API's
`recommendationModel`, until no training is queued or running, then scores every strategy; it
prints each model version as it appeared during the replay, and how much of the history the last
one learned from. That is what a client that only speaks GraphQL gets.

The app runs in-process on a temporary embedded store, so nothing here listens on a port.
Embeddings of the catalogue are cached on disk (`.ragql-eval-recs/`), keyed by the model and the
text, so a second run skips the minute of embedding."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
from tqdm import tqdm

from api import embedded
from bench import recs_baselines
from bench.recs_sim import Interaction, K, SimUser, hit_at, make_catalogue, ndcg_at, rank_of, simulate_users, timeline
from bench.stats import percentile
from domain.providers.embedding import Embedder, Vectors

PAGE = 100
CONCURRENCY = 8
STRATEGIES = ("popular", "content", "collaborative", "blended")
CACHE_DIR = Path(".ragql-eval-recs")

INGEST = """
mutation($input: IngestDocumentsInput!) {
  ingestDocuments(input: $input) { documents { id externalId } errors { code field message } }
}
"""
SUBMIT_FEEDBACK = """
mutation($input: FeedbackInput!) {
  submitFeedback(input: $input) { feedback { id } duplicate errors { code field message } }
}
"""
MODEL = """
{ recommendationModel { version events trainedAt eventsSince eventsNeeded training { id state runAfter } } }
"""
RECOMMENDATIONS = """
query($u: ID, $first: Int!, $options: RecommendationOptions) {
  recommendations(userId: $u, first: $first, options: $options) {
    items { document { id } score reasons }
    strategy queryId tookMs
  }
}
"""


class CatalogueItem(Protocol):
    @property
    def external_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def genre(self) -> str: ...


@dataclass(frozen=True)
class Replay:
    """What one run replays: a catalogue and its users' histories (the simulation's, or real ones)."""

    label: str  # printed on the summary line, e.g. "seed=7"
    items: Sequence[CatalogueItem]
    users: list[SimUser]


def simulation(*, users: int, seed: int) -> Replay:
    catalogue = make_catalogue()
    return Replay(f"seed={seed}", catalogue.items, simulate_users(catalogue, users=users, seed=seed))


class EvalError(RuntimeError):
    """The API refused or failed a call: the figures would be meaningless, so the run stops."""


class CachedEmbedder:
    """The real embedder, with a disk cache of document embeddings for this eval's catalogue
    (queries are never cached). Same model, same vectors: only the waiting is saved."""

    def __init__(self, inner: Embedder, cache_dir: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.path = cache_dir / f"{inner.name}-{inner.dim}.npz"
        self.known: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as stored:
                self.known = {k: stored[k] for k in stored.files}
        self.dirty = False

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    async def embed(self, texts: list[str]) -> Vectors:
        keys = [self._key(t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in self.known]
        if todo:
            fresh = await self.inner.embed([texts[i] for i in todo])
            for i, vec in zip(todo, fresh, strict=True):
                self.known[keys[i]] = np.asarray(vec, dtype=np.float32)
            self.dirty = True
        return np.stack([self.known[k] for k in keys])

    async def embed_query(self, text: str) -> Vectors:
        return await self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.known)  # type: ignore[arg-type]
            self.dirty = False


def feedback_input(user: SimUser, n: int, event: Interaction, ids: Sequence[str]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "userId": user.user_id,
        "documentId": ids[event.item],
        "kind": "RATING" if event.rating is not None else "VIEW",
        "idempotencyKey": f"{user.user_id}-{n}",
    }
    if event.rating is not None:
        payload["rating"] = event.rating
    return payload


async def _graphql(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200 or body.get("errors") or not body.get("data"):
        raise EvalError(f"GraphQL call failed ({response.status_code}): {body.get('errors') or response.text[:500]}")
    data: dict[str, Any] = body["data"]
    return data


async def ingest_catalogue(
    client: httpx.AsyncClient, embedder: CachedEmbedder, items: Sequence[CatalogueItem]
) -> list[str]:
    """The catalogue through `ingestDocuments`; the document ids in catalogue order."""
    by_external: dict[str, str] = {}
    with tqdm(total=len(items), desc="catalogue", unit="doc", file=sys.stderr) as bar:
        for start in range(0, len(items), PAGE):
            batch = items[start : start + PAGE]
            docs = [
                {"externalId": it.external_id, "title": it.title, "text": it.text, "metadata": {"genre": it.genre}}
                for it in batch
            ]
            payload = (await _graphql(client, INGEST, {"input": {"documents": docs}}))["ingestDocuments"]
            if payload["errors"]:
                raise EvalError(f"ingestDocuments refused the catalogue: {payload['errors']}")
            by_external.update({d["externalId"]: d["id"] for d in payload["documents"]})
            bar.update(len(batch))
    embedder.save()
    return [by_external[it.external_id] for it in items]


async def submit_all(
    client: httpx.AsyncClient, flat: Sequence[tuple[SimUser, int, Interaction]], ids: Sequence[str]
) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    with tqdm(total=len(flat), desc="feedback", unit="event", file=sys.stderr) as bar:

        async def submit(user: SimUser, n: int, event: Interaction) -> None:
            async with gate:
                data = await _graphql(client, SUBMIT_FEEDBACK, {"input": feedback_input(user, n, event, ids)})
            errors = data["submitFeedback"]["errors"]
            if errors:
                raise EvalError(f"submitFeedback refused {event} for {user.user_id}: {errors}")
            bar.update()

        # Tasks start in timeline order and the semaphore admits them in turn, so the timeline is
        # what the server sees, give or take the eight in flight. A task group cancels the rest at
        # the first failure instead of letting thousands of calls run on against a broken server.
        async with asyncio.TaskGroup() as group:
            for user, n, event in flat:
                group.create_task(submit(user, n, event))


async def score_strategy(
    client: httpx.AsyncClient, sim: Sequence[SimUser], strategy: str, ids: Sequence[str], label: str | None = None
) -> tuple[recs_baselines.Outcome, list[float]]:
    """Mean hit@10 and nDCG@10 over users, catalogue coverage, and the server-side tookMs of
    every call. Calls run one at a time so that tookMs is not inflated by our own concurrency."""
    hits: list[float] = []
    gains: list[float] = []
    took: list[float] = []
    shown: set[str] = set()
    for user in tqdm(sim, desc=f"recs {label or strategy}", unit="user", file=sys.stderr):
        variables = {"u": user.user_id, "first": K, "options": {"strategy": strategy.upper()}}
        result = (await _graphql(client, RECOMMENDATIONS, variables))["recommendations"]
        ranked = [item["document"]["id"] for item in result["items"]]
        shown.update(ranked)
        rank = rank_of(ids[user.held_out], ranked)
        hits.append(hit_at(rank))
        gains.append(ndcg_at(rank))
        took.append(float(result["tookMs"]))
    outcome = recs_baselines.Outcome(float(np.mean(hits)), float(np.mean(gains)), len(shown) / len(ids))
    return outcome, took


# The blend grid for `--sweep`: run it on a tuning seed, never on the reported one.
SWEEP_MODEL = (0.5, 1.0, 2.0)
SWEEP_CONTENT = (0.0, 0.25, 0.5)
SWEEP_CO = (0.0, 0.5, 1.0)
SWEEP_POPULAR = (0.3,)


async def sweep_blend(app: Any, client: httpx.AsyncClient, sim: Sequence[SimUser], ids: Sequence[str]) -> None:
    """Score BLENDED under each weight combination, on the same (trained) feedback state."""
    recommender = app.state.services.recommender
    default = recommender.weights
    grid = [(m, c, co, p) for m in SWEEP_MODEL for c in SWEEP_CONTENT for co in SWEEP_CO for p in SWEEP_POPULAR]
    try:
        for m, content, co, popular in grid:
            recommender.weights = replace(default, model=m, content=content, co_engagement=co, popular=popular)
            o, _ = await score_strategy(client, sim, "blended", ids, label=f"sweep m={m} c={content} co={co}")
            print(
                f"sweep model={m} content={content} co={co} popular={popular} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}",
                flush=True,
            )
    finally:
        recommender.weights = default


async def model_status(client: httpx.AsyncClient) -> dict[str, Any]:
    status: dict[str, Any] = (await _graphql(client, MODEL, {}))["recommendationModel"]
    return status


async def follow_models(client: httpx.AsyncClient, started: float, seen: list[tuple[float, dict[str, Any]]]) -> None:
    """Every model version as it appears (polled through the API), with when, until cancelled."""
    last = None
    while True:
        status = await model_status(client)
        if status["version"] != last:
            last = status["version"]
            seen.append((time.perf_counter() - started, status))
        await asyncio.sleep(1.0)


async def settled_model(client: httpx.AsyncClient, min_events: int, timeout_s: float = 900.0) -> dict[str, Any]:
    """The model once the trigger will train no more: nothing in flight, and fewer untrained
    events than the trailing edge trains (it fires once the feedback has been quiet for the
    spacing, so this waits for that too), seen twice in a row a few seconds apart."""
    deadline = time.perf_counter() + timeout_s
    quiet = 0
    while True:
        status = await model_status(client)
        done = status["training"] is None and status["eventsSince"] < max(1, min_events)
        quiet = quiet + 1 if done else 0
        if quiet >= 2:
            return status
        if time.perf_counter() > deadline:
            raise EvalError(f"the trigger was still training after {timeout_s:.0f}s: {status}")
        await asyncio.sleep(3.0)


async def await_autotrain(
    client: httpx.AsyncClient, flat: Sequence[Any], ids: Sequence[str], started: float, min_events: int
) -> tuple[float, dict[str, Any], list[tuple[float, dict[str, Any]]]]:
    """Replay the events while following the model versions; then wait for the trigger's last
    training. (replay seconds, the settled model, the versions seen)."""
    seen: list[tuple[float, dict[str, Any]]] = []
    follower = asyncio.create_task(follow_models(client, started, seen))
    try:
        await submit_all(client, flat, ids)
        replayed = time.perf_counter() - started
        final = await settled_model(client, min_events)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    if not seen or seen[-1][1]["version"] != final["version"]:
        seen.append((time.perf_counter() - started, final))
    return replayed, final, seen


def _line(name: str, o: recs_baselines.Outcome, note: str = "") -> str:
    return f"recs {name} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f} coverage={o.coverage:.4f}{note}"


async def _run(
    url: str, root: Path, replay: Replay, *, sweep: bool, autotrain: bool = False
) -> dict[str, recs_baselines.Outcome]:
    # Imported here so that the pure modules load without the app (for their unit tests).
    from asgi_lifespan import LifespanManager

    from api.app import create_app
    from api.settings import Settings
    from domain.providers.embedding import LocalEmbedder
    from domain.recommendations.training import train_tenant

    # One INFO line per request from httpx would bury the progress bars and the figures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The simulation is one client sending thousands of requests: rate limits would only slow it.
    unlimited: dict[str, Any] = {"rate_per_ip": 10**9, "tenant_quota": 10**9, "admission_per_ip_per_s": 10**6}
    embedder = CachedEmbedder(LocalEmbedder(), CACHE_DIR)
    # --autotrain: the in-process worker (a server with an external database runs none by default)
    # runs what the feedback trigger queues.
    in_process: dict[str, Any] = {"worker_in_process": True} if autotrain else {}
    settings = Settings(database_url=url, data_dir=root, load_demo=False, **unlimited, **in_process)
    app = create_app(settings, embedder=embedder)
    results: dict[str, recs_baselines.Outcome] = {}
    latencies: dict[str, list[float]] = {}
    # LifespanManager hands the lifespan's state to every request, as a server does.
    async with (
        LifespanManager(app, startup_timeout=120) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://eval", timeout=120
        ) as client,
    ):
        started = time.perf_counter()
        ids = await ingest_catalogue(client, embedder, replay.items)
        ingest_s = time.perf_counter() - started
        sim = replay.users
        flat = timeline(sim)
        started = time.perf_counter()
        if autotrain:
            replayed, final, versions = await await_autotrain(
                client, flat, ids, started, settings.recs_autotrain_min_events
            )
        else:
            await submit_all(client, flat, ids)
            replayed = time.perf_counter() - started
        print(
            f"recs {replay.label} users={len(sim)} catalogue={len(ids)} items (ingested in {ingest_s:.0f}s) "
            f"feedback={len(flat)} events in {replayed:.0f}s",
            flush=True,
        )
        for name, outcome in recs_baselines.run(sim, len(ids)).items():
            results[f"baseline-{name}"] = outcome
            print(_line(f"baseline-{name}", outcome, " (offline, from the same events)"), flush=True)
        if autotrain:
            print(
                f"recs autotrain min_events={settings.recs_autotrain_min_events} "
                f"min_growth={settings.recs_autotrain_min_growth} spacing={settings.recs_autotrain_spacing_s:g}s: "
                f"{sum(1 for _, m in versions if m['version'])} versions",
                flush=True,
            )
            for at, m in versions:
                print(f"recs autotrain t={at:.0f}s version={m['version']} events={m['events']}", flush=True)
            print(
                f"recs autotrain settled: version={final['version']} learned from {final['events']} of "
                f"{len(flat)} events ({final['eventsSince']} since), {time.perf_counter() - started:.0f}s "
                "after the replay began",
                flush=True,
            )
        else:
            results["blended-untrained"], latencies["blended-untrained"] = await score_strategy(
                client, sim, "blended", ids, label="blended-untrained"
            )
            services = app.state.services
            report = await train_tenant(services.db, services.dev_tenant)
            print(
                f"recs trained version={report.version} on {report.events} events, {report.users} users, "
                f"{report.items} items in {report.took_ms / 1000:.1f}s (fit {report.fit_ms / 1000:.1f}s)",
                flush=True,
            )
        if sweep:
            await sweep_blend(app, client, sim, ids)
        for strategy in STRATEGIES:
            results[strategy], latencies[strategy] = await score_strategy(client, sim, strategy, ids)
    shown = [n for n in ("blended-untrained", *STRATEGIES) if n in results]
    for name in shown:
        print(_line(name, results[name]))
    for name in shown:
        took = latencies[name]
        print(
            f"recs {name} latency p50={percentile(took, 50):.1f}ms p95={percentile(took, 95):.1f}ms "
            f"(server side, first={K}, n={len(took)})"
        )
    return results


def run_recs_eval(
    *, users: int = 800, seed: int = 7, sweep: bool = False, autotrain: bool = False
) -> dict[str, recs_baselines.Outcome]:
    """Outcome per strategy and baseline, printed as well."""
    with embedded.temporary("ragql-eval-recs-") as (root, url):
        return asyncio.run(_run(url, root, simulation(users=users, seed=seed), sweep=sweep, autotrain=autotrain))


def run_replay(replay: Replay, *, autotrain: bool) -> dict[str, recs_baselines.Outcome]:
    """Another catalogue's histories (`bench/recs_real.py --replay`) through the same API replay."""
    with embedded.temporary("ragql-eval-recs-") as (root, url):
        return asyncio.run(_run(url, root, replay, sweep=False, autotrain=autotrain))


def run_offline(*, users: int = 800, seed: int = 1, sweep: bool = False) -> None:
    """The baselines alone, no server (seconds): `python -m bench eval-recs --offline [--sweep]`."""
    sim = simulate_users(make_catalogue(), users=users, seed=seed)
    n_items = len(make_catalogue().items)
    if sweep:
        recs_baselines.sweep(sim, n_items)
    for name, outcome in recs_baselines.run(sim, n_items).items():
        print(_line(f"baseline-{name}", outcome))
