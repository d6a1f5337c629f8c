"""Fusion of the dense and keyword legs. Pure functions over {key: score}, higher is better.

`alpha` is the weight of the dense leg (LEARNED ignores it: its weights were fitted). A key
missing from a leg contributes nothing (RRF, relative score) or the leg's lowest normalised score
(z-score), so one strong leg can still carry a result."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)
FusionMethod = Literal["RRF", "RELATIVE_SCORE", "ZSCORE", "LEARNED"]
RRF_K = 60


def ranks(scores: Mapping[K, float]) -> dict[K, int]:
    """1-based ranks, best first; ties keep insertion order."""
    ordered = sorted(scores, key=lambda k: -scores[k])
    return {k: i + 1 for i, k in enumerate(ordered)}


def minmax(scores: Mapping[K, float]) -> dict[K, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-12:
        return {k: 1.0 for k in scores}
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}


def zscores(scores: Mapping[K, float]) -> dict[K, float]:
    if not scores:
        return {}
    values = list(scores.values())
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std < 1e-12:
        return {k: 0.0 for k in scores}
    return {k: (v - mean) / std for k, v in scores.items()}


def fuse(
    dense: Mapping[K, float],
    keyword: Mapping[K, float],
    *,
    method: FusionMethod,
    alpha: float,
    rrf_k: int = RRF_K,
) -> dict[K, float]:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be within 0..1")
    keys = list(dict.fromkeys([*dense, *keyword]))
    if method == "LEARNED":
        # Imported here: the learned model builds on this module's normalisations.
        from domain.retrieval.learned import learned_fuse

        return learned_fuse(dense, keyword)
    if method == "RRF":
        rd, rk = ranks(dense), ranks(keyword)
        return {
            k: (alpha / (rrf_k + rd[k]) if k in rd else 0.0) + ((1 - alpha) / (rrf_k + rk[k]) if k in rk else 0.0)
            for k in keys
        }
    if method == "RELATIVE_SCORE":
        nd, nk = minmax(dense), minmax(keyword)
        return {k: alpha * nd.get(k, 0.0) + (1 - alpha) * nk.get(k, 0.0) for k in keys}
    zd, zk = zscores(dense), zscores(keyword)
    floor_d, floor_k = min(zd.values(), default=0.0), min(zk.values(), default=0.0)
    return {k: alpha * zd.get(k, floor_d) + (1 - alpha) * zk.get(k, floor_k) for k in keys}
