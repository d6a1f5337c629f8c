"""The collaborative model, pure numpy/scipy: implicit-feedback ALS (Hu, Koren & Volinsky 2008)
from the `implicit` package, the request-time fold-in of one user, and normalised item–item
neighbours. No database here: `training.py` reads events and stores what this returns.

Why ALS: on the simulation's tuning seed (`python -m bench eval-recs --seed 1 --offline --sweep`) it is level with
EASE and above item-KNN, and unlike EASE (an items × items dense matrix) its output is one short
vector per item, which fits a pgvector column and an HNSW index, and it folds a new user in with
one k × k solve, so a like counts on the next request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Matrix = npt.NDArray[np.float32]
# The stored factors' dimension: HNSW needs a fixed one, so migration 0007 creates vector(32).
STORED_FACTORS = 32


@dataclass(frozen=True)
class ModelConfig:
    factors: int = STORED_FACTORS
    regularization: float = 5.0
    alpha: float = 2.0  # confidence = 1 + alpha × |signed event weight|
    iterations: int = 15
    seed: int = 42
    neighbours: int = 50  # normalised co-engagement neighbours kept per item
    neighbour_damping: float = 0.8  # 0.5 = cosine; higher damps popular neighbours further
    neighbour_shrink: float = 5.0  # pairs seen by few users count less (shrunk towards 0)


def confidence(weight: float, alpha: float) -> float:
    """Signed confidence for implicit's ALS: positive = preference 1, negative = preference 0, both
    with weight 1 + alpha × |w|. Zero stays zero (no observation)."""
    if weight == 0.0:
        return 0.0
    strength = 1.0 + alpha * abs(weight)
    return strength if weight > 0 else -strength


def fit(user_items: sp.csr_matrix, config: ModelConfig) -> tuple[Matrix, Matrix]:
    """(user factors, item factors). `user_items` holds signed confidences. Deterministic for a
    seed: implicit solves each row independently, and BLAS is held to one thread (implicit's own
    advice, and what keeps sums in one order)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=1.0,  # the confidences are already scaled
            iterations=config.iterations,
            random_state=config.seed,
            calculate_training_loss=False,
            num_threads=1,
        )
        model.fit(user_items.astype(np.float32).tocsr(), show_progress=False)
    users = np.asarray(model.user_factors, dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return users, items


def gram(items: Matrix) -> npt.NDArray[np.float64]:
    """YᵀY over every item: the part of each user's normal equations that is the same for all."""
    y = items.astype(np.float64)
    return y.T @ y


def fold_in(
    gram_matrix: npt.NDArray[np.float64],
    item_vectors: Matrix,
    confidences: npt.NDArray[np.float64],
    regularization: float,
) -> npt.NDArray[np.float64]:
    """One user's vector from their items, the exact ALS user step implicit runs in training:
    (YᵀY + λI + Σ (|c|−1) y yᵀ) x = Σ_{c>0} c y."""
    k = gram_matrix.shape[0]
    if len(confidences) == 0:
        return np.zeros(k)
    y = item_vectors.astype(np.float64)
    c = np.asarray(confidences, dtype=np.float64)
    a = gram_matrix + regularization * np.eye(k) + (y.T * (np.abs(c) - 1.0)) @ y
    b = (np.where(c > 0, c, 0.0)[:, None] * y).sum(axis=0)
    solved: npt.NDArray[np.float64] = np.linalg.solve(a, b)
    return solved


def liked_matrix(user_items: sp.csr_matrix) -> sp.csr_matrix:
    """1 where the user's verdict on the item is positive, from the signed confidences."""
    positive = user_items.copy().tocsr()
    positive.data = (positive.data > 0).astype(np.float32)
    positive.eliminate_zeros()
    return positive


def neighbours(
    liked: sp.csr_matrix, config: ModelConfig
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Normalised co-engagement, top `config.neighbours` per item: (item, neighbour, score) where
    score = co(a, b) / (n_a^(1-d) · n_b^d) · co/(co + shrink). With d = 0.5 that is the cosine of the
    two items' liker sets; d > 0.5 damps popular neighbours, so a blockbuster is not everyone's
    nearest neighbour merely by being everywhere. Only current likes count: a later dislike
    retracts a like from every pair it was in."""
    x = liked.astype(np.float32).tocsc()
    co = (x.T @ x).tocsr().astype(np.float32)
    co.setdiag(0)
    co.eliminate_zeros()
    counts = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    d = config.neighbour_damping
    rows, cols, out_scores = [], [], []
    for a in range(co.shape[0]):
        start, end = co.indptr[a], co.indptr[a + 1]
        if start == end:
            continue
        b = co.indices[start:end]
        pairs = co.data[start:end].astype(np.float64)
        score = pairs / (counts[a] ** (1 - d) * counts[b] ** d) * pairs / (pairs + config.neighbour_shrink)
        keep = np.argsort(-score, kind="stable")[: config.neighbours]
        rows.append(np.full(len(keep), a))
        cols.append(b[keep])
        out_scores.append(score[keep].astype(np.float32))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(out_scores)
