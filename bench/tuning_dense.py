"""The dense-side levers over bench/dense_levers.py's stored legs (exact chunk search, one vector
per whole document), for bench/tuning.py: each fused with the keyword leg by z-score, as the
default is, its parameters cross-validated on train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.tuning import Run, aggregate, ranked
from bench.tuning_keyword import Lever, _three
from domain.retrieval.fusion import fuse


def attach(leg_dir: Path, train: dict[str, Any], test: dict[str, Any]) -> bool:
    path = leg_dir / "dense-levers.json"
    if not path.exists():
        return False
    extra = json.loads(path.read_text())
    for split, legs in (("train", train), ("test", test)):
        for qid, leg in legs.items():
            leg["dense_extra"] = extra[split][qid]
    return True


def run_dense_levers(found: bool, lever: Lever, alphas: list[float]) -> None:
    if not found:
        print("dense levers: no dense-levers.json (python -m bench eval --dense-levers)", flush=True)
        return

    def replaced(name: str) -> Run:
        def run(leg: dict[str, Any], alpha: float) -> list[str]:
            d = aggregate(leg["dense_extra"][name], "max")
            return ranked(fuse(d, aggregate(leg["keyword"], "max"), method="ZSCORE", alpha=alpha))

        return run

    lever("dense leg: exact search instead of HNSW", replaced("exact"), alphas)
    lever("dense leg: one vector per whole document", replaced("doc"), alphas)

    def chunk_and_doc(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        # _three splits its second weight over its 2nd and 3rd legs: here the keyword side is the
        # first leg, so pass 1 - alpha as its weight and the dense legs split (1 - w) / w.
        k = aggregate(leg["keyword"], "max")
        d, doc = aggregate(leg["dense"], "max"), aggregate(leg["dense_extra"]["doc"], "max")
        return ranked(_three(k, d, doc, 1 - alpha, w))

    lever("dense: chunk + whole-document vector (z)", chunk_and_doc, [(w, a) for w in (0.25, 0.5) for a in alphas])
