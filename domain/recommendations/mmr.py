"""Maximal marginal relevance: trade relevance against similarity to what is already picked."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def mmr(
    relevance: npt.NDArray[np.float64],
    vectors: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    k: int,
    diversity: float,
) -> list[int]:
    """Indices of up to `k` items, best first. `relevance` is scaled to 0..1 here so that
    `diversity` (0 = pure relevance, 1 = maximal diversity) means the same for any score range;
    `vectors` are unit rows, so their dot product is the cosine similarity."""
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    span = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones(n)
    if diversity <= 0.0:
        return [int(i) for i in np.argsort(-rel, kind="stable")[:k]]
    unit_rows = np.asarray(vectors, dtype=np.float64)
    # Only the picked rows' similarities are ever read: k matrix-vector products, not the n × n
    # matrix (at 200 candidates of 384 dimensions that matrix was most of a request's CPU).
    picked: list[int] = []
    closest = np.full(n, -np.inf)  # each item's highest similarity to anything picked so far
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(closest), closest, 0.0)
        objective = (1.0 - diversity) * rel - diversity * redundancy
        objective[~available] = -np.inf
        best = int(np.argmax(objective))
        picked.append(best)
        available[best] = False
        closest = np.maximum(closest, unit_rows @ unit_rows[best])
    return picked
