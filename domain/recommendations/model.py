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
    # The weight of an item's missing entries ("this user never touched it"), by the item's
    # popularity (He et al. 2016, eALS): missing_weight × (n_i + 1)^missing_exponent, scaled to
    # average missing_weight over the items. Not having touched a popular item says more than not
    # having touched an obscure one nobody finds. The default, uniform (1, 0), is plain implicit
    # ALS: on the tuning seed (0.5, 0.5) was level on hit@10 (+0.009 ± 0.010) and raised coverage
    # from 0.16 to 0.23 (README, "Recommendation quality"), not enough to make the slower
    # pure-numpy fit the default.
    missing_weight: float = 1.0
    missing_exponent: float = 0.0

    @property
    def uniform(self) -> bool:
        return self.missing_weight == 1.0 and self.missing_exponent == 0.0


def confidence(weight: float, alpha: float) -> float:
    """Signed confidence for implicit's ALS: positive = preference 1, negative = preference 0, both
    with weight 1 + alpha × |w|. Zero stays zero (no observation)."""
    if weight == 0.0:
        return 0.0
    strength = 1.0 + alpha * abs(weight)
    return strength if weight > 0 else -strength


def missing_weights(user_items: sp.csr_matrix, config: ModelConfig) -> npt.NDArray[np.float64]:
    """Per item, the weight of its missing entries (see `ModelConfig.missing_weight`)."""
    touched = np.diff(user_items.tocsc().indptr).astype(np.float64)
    raw = (touched + 1.0) ** config.missing_exponent
    scaled: npt.NDArray[np.float64] = config.missing_weight * raw / (raw.mean() if raw.size else 1.0)
    return scaled


def fit(user_items: sp.csr_matrix, config: ModelConfig) -> tuple[Matrix, Matrix]:
    """(user factors, item factors). `user_items` holds signed confidences. Uniform missing
    weights: implicit's ALS; otherwise `fit_weighted`. Deterministic for a seed."""
    if not config.uniform:
        return fit_weighted(user_items, config)
    return _fit_implicit(user_items, config)


def _fit_implicit(user_items: sp.csr_matrix, config: ModelConfig) -> tuple[Matrix, Matrix]:
    """implicit solves each row independently, and BLAS is held to one thread (implicit's own
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


def fit_weighted(user_items: sp.csr_matrix, config: ModelConfig) -> tuple[Matrix, Matrix]:
    """ALS with per-item weights on the missing entries (eALS's objective, solved exactly row by
    row rather than by coordinate descent): the user step is the fold-in's equations with the
    weighted Gram Σ w_i y_i yᵢᵀ, the item step weights item i's missing users by w_i. Pure numpy,
    one solve per row; deterministic for a seed (the initial factors are its only randomness)."""
    c = user_items.astype(np.float64).tocsr()
    w = missing_weights(c, config)
    k = config.factors
    rng = np.random.default_rng(config.seed)
    users = rng.normal(0.0, 0.01, (c.shape[0], k))
    items = rng.normal(0.0, 0.01, (c.shape[1], k))
    by_item = c.tocsc()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # thousands of tiny solves: threads only add overhead
        users, items = _alternate(c, by_item, users, items, w, config)
    return users.astype(np.float32), items.astype(np.float32)


def _alternate(
    c: sp.csr_matrix,
    by_item: sp.csc_matrix,
    users: npt.NDArray[np.float64],
    items: npt.NDArray[np.float64],
    w: npt.NDArray[np.float64],
    config: ModelConfig,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    for _ in range(config.iterations):
        users = _solve_rows(c, items, gram(items, w), np.ones(c.shape[0]), w[c.indices], config.regularization)
        items = _solve_rows(
            _as_csr(by_item), users, gram(users), w, np.repeat(w, np.diff(by_item.indptr)), config.regularization
        )
    return users, items


def _as_csr(by_column: sp.csc_matrix) -> sp.csr_matrix:
    """The transpose, as rows: item i's users become row i (same arrays, no copy of the data)."""
    return sp.csr_matrix((by_column.data, by_column.indices, by_column.indptr), shape=by_column.shape[::-1])


def _solve_rows(
    rows: sp.csr_matrix,
    other: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    entry_missing: npt.NDArray[np.float64],
    regularization: float,
) -> npt.NDArray[np.float64]:
    """Per row r: (scale_r · base + λI + Σ_j (|c_rj| − m_rj) v_j v_jᵀ) x_r = Σ_{c_rj>0} c_rj v_j,
    where m_rj is that entry's missing weight (what the observation replaces). One k × k solve per
    row (about 40 µs at k = 32): a batched version that built every entry's outer product was
    slower, by its memory traffic."""
    n, k = rows.shape[0], other.shape[1]
    out = np.zeros((n, k))
    eye = regularization * np.eye(k)
    for r in range(n):
        lo, hi = rows.indptr[r], rows.indptr[r + 1]
        if hi == lo:
            continue  # no observations: the solution is 0
        data = rows.data[lo:hi]
        v = other[rows.indices[lo:hi]]
        a = scale[r] * base + eye + (v.T * (np.abs(data) - entry_missing[lo:hi])) @ v
        out[r] = np.linalg.solve(a, np.where(data > 0, data, 0.0) @ v)
    return out


def gram(
    items: Matrix | npt.NDArray[np.float64], weights: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    """Σ w_i y_i yᵢᵀ over every item (w = 1: YᵀY): the part of each user's normal equations that
    is the same for all. The fold-in keeps (|c| − 1) for an observed item whatever its missing
    weight: on the tuning seed that approximation ranks as well as the exact weights."""
    y = items.astype(np.float64)
    if weights is None:
        return y.T @ y
    return (y * weights[:, None]).T @ y


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
