"""LEARNED fusion: a linear (logistic) model over features both legs already return.

The weights were fitted on the SciFact train split with 5-fold cross-validation
(`python -m bench tune`) and ship as learned_fusion.json beside this file; the intercept is left
out because it does not change a ranking."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from functools import cache
from pathlib import Path
from typing import TypeVar

from domain.retrieval.fusion import ranks, zscores

K = TypeVar("K", bound=Hashable)
FEATURES = ("dense_z", "keyword_z", "dense_rrf", "keyword_rrf", "in_dense", "in_keyword", "dense_cosine")
WEIGHTS_FILE = Path(__file__).with_name("learned_fusion.json")
_RRF_K = 10


def features(dense: Mapping[K, float], keyword: Mapping[K, float]) -> dict[K, list[float]]:
    zd, zk = zscores(dense), zscores(keyword)
    rd, rk = ranks(dense), ranks(keyword)
    floor_d, floor_k = min(zd.values(), default=0.0), min(zk.values(), default=0.0)
    low_cos = min(dense.values(), default=0.0)
    out: dict[K, list[float]] = {}
    for key in dict.fromkeys([*dense, *keyword]):
        out[key] = [
            zd.get(key, floor_d),
            zk.get(key, floor_k),
            1.0 / (_RRF_K + rd[key]) if key in rd else 0.0,
            1.0 / (_RRF_K + rk[key]) if key in rk else 0.0,
            1.0 if key in rd else 0.0,
            1.0 if key in rk else 0.0,
            dense.get(key, low_cos),
        ]
    return out


@cache
def shipped_weights() -> tuple[float, ...]:
    data = json.loads(WEIGHTS_FILE.read_text())
    if tuple(data["features"]) != FEATURES:
        raise RuntimeError(f"{WEIGHTS_FILE.name} was fitted on other features; rerun `python -m bench tune`")
    return tuple(float(w) for w in data["weights"])


def learned_fuse(dense: Mapping[K, float], keyword: Mapping[K, float]) -> dict[K, float]:
    weights = shipped_weights()
    return {k: sum(w * x for w, x in zip(weights, row, strict=True)) for k, row in features(dense, keyword).items()}
