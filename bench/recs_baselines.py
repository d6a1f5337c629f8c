"""The classic baselines of `make eval-recs`, computed offline by the client from the same events it
replays through the API, on the same held-out items: popularity, item-KNN (normalised
co-engagement), EASE (Steck 2019, closed form) and the ALS model alone (the product's own `fit` and
`fold_in`). Seen items are never recommended, as in the API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from bench.recs_sim import K, SimUser, hit_at, ndcg_at
from domain.feedback.kinds import WEIGHTS, weight
from domain.recommendations import model
from domain.recommendations.model import ModelConfig

Scores = npt.NDArray[np.float64]  # users × items


@dataclass(frozen=True)
class Outcome:
    hit: float
    ndcg: float
    coverage: float  # share of the catalogue that appears in anyone's top 10


def event_weight(rating: float | None) -> float:
    """What the API makes of the event the eval sends for an interaction: a RATING, or a VIEW."""
    return weight("RATING", rating) if rating is not None else WEIGHTS["VIEW"]


def user_items(users: list[SimUser], n_items: int, alpha: float) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for u, user in enumerate(users):
        for event in user.history:
            c = model.confidence(event_weight(event.rating), alpha)
            if c != 0.0:
                rows.append(u)
                cols.append(event.item)
                vals.append(c)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(users), n_items), dtype=np.float32)


def evaluate(users: list[SimUser], scores: Scores, seen: sp.csr_matrix) -> Outcome:
    scores = scores.copy()
    scores[seen.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    hits, gains = [], []
    for u, user in enumerate(users):
        where = np.flatnonzero(top[u] == user.held_out)
        rank = int(where[0]) + 1 if len(where) else None
        hits.append(hit_at(rank))
        gains.append(ndcg_at(rank))
    coverage = len(np.unique(top)) / scores.shape[1]
    return Outcome(float(np.mean(hits)), float(np.mean(gains)), coverage)


def popular(liked: sp.csr_matrix) -> Scores:
    counts = np.asarray(liked.sum(axis=0)).ravel().astype(np.float64)
    return np.tile(counts, (liked.shape[0], 1))


def item_knn(liked: sp.csr_matrix, config: ModelConfig) -> Scores:
    a, b, s = model.neighbours(liked, config)
    n = liked.shape[1]
    sims = sp.csr_matrix((s, (a, b)), shape=(n, n), dtype=np.float64)
    return np.asarray((liked.astype(np.float64) @ sims).todense())


def ease(liked: sp.csr_matrix, regularization: float = 50.0) -> Scores:
    x = liked.astype(np.float64)
    g = np.asarray((x.T @ x).todense())
    g[np.diag_indices_from(g)] += regularization
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return np.asarray(x @ b)


def als(confidences: sp.csr_matrix, config: ModelConfig) -> Scores:
    """Train on everyone, then fold each user in as the API does, rather than reading the
    training's own user factors: this measures what serving computes."""
    _, items = model.fit(confidences, config)
    g = model.gram(items, None if config.uniform else model.missing_weights(confidences, config))
    out = np.zeros((confidences.shape[0], items.shape[0]))
    for u in range(confidences.shape[0]):
        start, end = confidences.indptr[u], confidences.indptr[u + 1]
        idx = confidences.indices[start:end]
        x = model.fold_in(g, items[idx], confidences.data[start:end].astype(np.float64), config.regularization)
        out[u] = items.astype(np.float64) @ x
    return out


def baselines(users: list[SimUser], n_items: int, config: ModelConfig) -> dict[str, Callable[[], Scores]]:
    confidences = user_items(users, n_items, config.alpha)
    liked = model.liked_matrix(confidences)
    return {
        "popular": lambda: popular(liked),
        "item-knn": lambda: item_knn(liked, config),
        "ease": lambda: ease(liked),
        "als": lambda: als(confidences, config),
    }


def run_clicks(users: list[SimUser], n_items: int, config: ModelConfig | None = None) -> dict[str, Outcome]:
    """The baselines when every event is a CLICK (`eval-recs-real --clicks`): there are no likes,
    so popularity, item-KNN and EASE read the clicks themselves, and ALS the clicks' confidence."""
    config = config or ModelConfig()
    seen = user_items(users, n_items, 1.0)  # the histories' events are views: all positive
    clicked = model.liked_matrix(seen)  # 1 per clicked item
    confidences = (clicked * model.confidence(WEIGHTS["CLICK"], config.alpha)).tocsr()
    makers: dict[str, Callable[[], Scores]] = {
        "popular": lambda: popular(clicked),
        "item-knn": lambda: item_knn(clicked, config),
        "ease": lambda: ease(clicked),
        "als": lambda: als(confidences, config),
    }
    return {name: evaluate(users, make(), seen) for name, make in makers.items()}


def run(users: list[SimUser], n_items: int, config: ModelConfig | None = None) -> dict[str, Outcome]:
    config = config or ModelConfig()
    seen = user_items(users, n_items, 1.0)
    return {name: evaluate(users, make(), seen) for name, make in baselines(users, n_items, config).items()}


def _standardised(scores: Scores, seen: sp.csr_matrix) -> Scores:
    """Per user, (score - mean) / sd over the unseen items: so two models' scores can be added."""
    s = scores.astype(np.float64).copy()
    s[seen.nonzero()] = np.nan
    mean = np.nanmean(s, axis=1, keepdims=True)
    sd = np.nanstd(s, axis=1, keepdims=True)
    return np.nan_to_num((s - mean) / np.where(sd > 0, sd, 1.0), nan=-1e9)


def sweep_levers(users: list[SimUser], n_items: int) -> None:
    """The levers tried for the 2× bar (issue 14), on the tuning seed: BM25 weighting of the
    interaction matrix, ALS blended with EASE or item-KNN, and popularity damping of ALS."""
    from implicit.nearest_neighbours import bm25_weight

    seen = user_items(users, n_items, 1.0)
    base = ModelConfig()
    conf = user_items(users, n_items, base.alpha)
    liked = model.liked_matrix(conf)
    positive = conf.copy()
    positive.data = np.where(positive.data > 0, positive.data, 0)
    positive.eliminate_zeros()
    for k1, b in ((100.0, 0.8), (10.0, 0.5), (1.2, 0.75)):
        weighted = bm25_weight(sp.coo_matrix(positive), K1=k1, B=b).tocsr()
        for alpha in (2.0, 10.0):
            c = weighted.copy()
            c.data = 1 + alpha * c.data / c.data.max()
            o = evaluate(users, als(c.astype(np.float32), base), seen)
            print(f"sweep als-bm25 K1={k1} B={b} alpha={alpha} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}", flush=True)
    z_als = _standardised(als(conf, base), seen)
    for name, other in (("ease", ease(liked)), ("item-knn", item_knn(liked, base))):
        z_other = _standardised(other, seen)
        for w in (0.3, 0.5, 1.0):
            o = evaluate(users, z_als + w * z_other, seen)
            print(f"sweep als+{w}*{name} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}", flush=True)
    log_pop = np.log(np.asarray(liked.sum(axis=0)).ravel() + 1.0)[None, :]
    for beta in (-0.5, -0.25, 0.25):
        o = evaluate(users, z_als + beta * log_pop, seen)
        print(f"sweep als{beta:+}*log(likers) hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}", flush=True)


def _hits(users: list[SimUser], scores: Scores, seen: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """Per user, 1.0 if the held-out item is in the top 10 (seen items never recommended)."""
    s = scores.copy()
    s[seen.nonzero()] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :K]
    return np.array([float(user.held_out in top[u]) for u, user in enumerate(users)])


def _recent(users: list[SimUser], sims: Scores, last: int, decay: float) -> Scores:
    """Per user, sum over their `last` most recent likes of decay^age × similarity to each item."""
    out = np.zeros((len(users), sims.shape[1]))
    for u, user in enumerate(users):
        liked = [e.item for e in user.history if e.liked][::-1][:last]
        for age, item in enumerate(liked):
            out[u] += decay**age * sims[item]
    return out


def _reciprocal_rank(seen: sp.csr_matrix, *scored: tuple[Scores, float], k: float) -> Scores:
    """Reciprocal-rank fusion: sum of weight / (k + rank) over the lists (seen items ranked last)."""
    out = np.zeros_like(scored[0][0])
    for scores, w in scored:
        s = scores.copy()
        s[seen.nonzero()] = -np.inf
        ranks = np.argsort(np.argsort(-s, axis=1, kind="stable"), axis=1) + 1
        out += w / (k + ranks)
    return out


def sweep_sequence_fusion_adaptive(users: list[SimUser], n_items: int) -> None:
    """The three levers of the issue-14/18 round, each against ALS alone on the same users, with
    the standard error of the paired difference: (1) a sequential signal, the user's last few likes
    weighted by recency, through transitions (items liked within 3 likes of each other), item-KNN
    or factor cosine; (2) reciprocal-rank fusion of ALS with EASE or popularity instead of a score
    blend; (3) popularity weighted per user by history length (more for short histories)."""
    base = ModelConfig()
    seen = user_items(users, n_items, 1.0)
    conf = user_items(users, n_items, base.alpha)
    liked = model.liked_matrix(conf)
    als_scores = als(conf, base)
    reference = _hits(users, als_scores, seen)
    z_als = _standardised(als_scores, seen)

    def report(name: str, scores: Scores) -> None:
        hits = _hits(users, scores, seen)
        diff = hits - reference
        se = float(np.std(diff) / np.sqrt(len(diff)))
        print(f"sweep {name} hit@10={hits.mean():.4f} vs als {reference.mean():.4f}: {diff.mean():+.4f} ±{se:.4f}")

    likers = np.asarray(liked.sum(axis=0)).ravel().astype(np.float64) + 1.0
    transitions = np.zeros((n_items, n_items))
    for user in users:
        order = [e.item for e in user.history if e.liked]
        for i, earlier in enumerate(order):
            for later in order[i + 1 : i + 4]:
                transitions[earlier, later] += 1.0
                transitions[later, earlier] += 1.0
    transitions *= transitions / (transitions + base.neighbour_shrink)
    transitions /= likers[:, None] ** (1 - base.neighbour_damping) * likers[None, :] ** base.neighbour_damping
    a, b, v = model.neighbours(liked, base)
    knn = sp.csr_matrix((v, (a, b)), shape=(n_items, n_items)).toarray()
    _, items = model.fit(conf, base)
    unit_items = items.astype(np.float64) / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-9)
    for label, sims in (("transitions", transitions), ("item-knn", knn), ("factor-cosine", unit_items @ unit_items.T)):
        for last, decay in ((3, 0.7), (10, 0.8)):
            z_seq = _standardised(_recent(users, sims, last, decay), seen)
            for w in (0.3, 1.0):
                report(f"als+{w}*recent-{label} last={last} decay={decay}", z_als + w * z_seq)
    popularity = np.tile(np.log(likers), (len(users), 1))
    for k in (10.0, 60.0):
        report(f"rrf(als, ease) k={k}", _reciprocal_rank(seen, (als_scores, 1.0), (ease(liked), 1.0), k=k))
        report(f"rrf(als, 0.2*popular) k={k}", _reciprocal_rank(seen, (als_scores, 1.0), (popularity, 0.2), k=k))
    likes = np.array([sum(e.liked for e in user.history) for user in users], dtype=np.float64)
    z_pop = _standardised(popularity, seen)
    for scale in (5.0, 20.0):
        for strength in (0.25, 0.5, 1.0):
            beta = strength / (1.0 + likes / scale)
            report(f"als+{strength}/(1+likes/{scale})*popular", z_als + beta[:, None] * z_pop)


def sweep_missing_weights(users: list[SimUser], n_items: int) -> None:
    """Issue 14, third round: ALS with popularity-weighted missing entries (`model.fit_weighted`,
    eALS's objective) against plain implicit ALS, on the same users, with the standard error of
    the paired difference; three initialisations of the best variant show the fit's own noise."""
    base = ModelConfig()
    seen = user_items(users, n_items, 1.0)
    conf = user_items(users, n_items, base.alpha)
    reference = _hits(users, als(conf, base), seen)
    grid = [(1.0, 1e-9, 42), (0.5, 0.25, 42), (1.0, 0.25, 42), (0.5, 0.5, 42), (0.75, 0.5, 42), (0.3, 0.5, 42)]
    grid += [(0.5, 0.75, 42), (0.5, 0.5, 43), (0.5, 0.5, 44)]  # c0, gamma, initialisation seed
    for c0, gamma, seed in grid:
        cfg = replace(base, missing_weight=c0, missing_exponent=gamma, seed=seed)
        o = evaluate(users, scores := als(conf, cfg), seen)
        diff = _hits(users, scores, seen) - reference
        se = float(np.std(diff) / np.sqrt(len(diff)))
        print(
            f"sweep weighted-als c0={cfg.missing_weight} gamma={cfg.missing_exponent} seed={cfg.seed} "
            f"hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f} coverage={o.coverage:.4f} vs als {diff.mean():+.4f} ±{se:.4f}",
            flush=True,
        )


def sweep(users: list[SimUser], n_items: int) -> None:
    """The grid the defaults were chosen from, printed: run it on the tuning seed."""
    sweep_missing_weights(users, n_items)
    sweep_sequence_fusion_adaptive(users, n_items)
    sweep_levers(users, n_items)
    seen = user_items(users, n_items, 1.0)
    base = ModelConfig()
    liked = model.liked_matrix(seen)
    for lam in (50.0, 150.0, 300.0, 600.0):
        o = evaluate(users, ease(liked, lam), seen)
        print(f"sweep ease lambda={lam} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}", flush=True)
    for damping in (0.5, 0.65, 0.8):
        for shrink in (0.0, 5.0):
            cfg = replace(base, neighbour_damping=damping, neighbour_shrink=shrink)
            o = evaluate(users, item_knn(liked, cfg), seen)
            print(f"sweep item-knn damping={damping} shrink={shrink} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}")
    for factors in (32, 64):
        for alpha in (2.0, 10.0, 30.0):
            for reg in (0.05, 1.0, 5.0):
                cfg = replace(base, factors=factors, alpha=alpha, regularization=reg)
                o = evaluate(users, als(user_items(users, n_items, alpha), cfg), seen)
                print(
                    f"sweep als factors={factors} alpha={alpha} reg={reg} hit@10={o.hit:.4f} ndcg@10={o.ndcg:.4f}",
                    flush=True,
                )
