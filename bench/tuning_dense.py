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


def attach(leg_dir: Path, train: dict[str, Any], test: dict[str, Any]) -> set[str]:
    """Put each query's extra dense legs at leg["dense_extra"]; the names stored (none: no file)."""
    path = leg_dir / "dense-levers.json"
    if not path.exists():
        return set()
    extra = json.loads(path.read_text())
    for split, legs in (("train", train), ("test", test)):
        for qid, leg in legs.items():
            leg["dense_extra"] = extra[split][qid]
    return set(next(iter(extra["train"].values())))


def run_dense_levers(found: set[str], lever: Lever, alphas: list[float]) -> None:
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
    if "sentence" not in found:
        print("sentence levers: dense-levers.json predates them (delete it, then --dense-levers)", flush=True)
        return
    lever("dense leg: best sentence instead of best chunk", replaced("sentence"), alphas)

    def sentence_top(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        d = aggregate(leg["dense_extra"]["sentence"], "top2", w)
        return ranked(fuse(d, aggregate(leg["keyword"], "max"), method="ZSCORE", alpha=alpha))

    lever("dense leg: best + w x second sentence", sentence_top, [(w, a) for w in (0.25, 0.5) for a in alphas])

    def chunk_and_sentence(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        k = aggregate(leg["keyword"], "max")
        d, sent = aggregate(leg["dense"], "max"), aggregate(leg["dense_extra"]["sentence"], "max")
        return ranked(_three(k, d, sent, 1 - alpha, w))

    lever(
        "dense: chunk + best sentence (z)",
        chunk_and_sentence,
        [(w, a) for w in (0.25, 0.4, 0.5, 0.6) for a in alphas],
    )

    def candidates_rescored(leg: dict[str, Any], p: tuple[float, float, int]) -> list[str]:
        """As a search would serve it: its legs' first `depth` chunk rows (the served depth at
        `first` 10 is 50), and every candidate document's best sentence z-scored among them."""
        w, alpha, depth = p
        k = aggregate(sorted(leg["keyword"], key=lambda r: -r[1])[:depth], "max")
        d = aggregate(sorted(leg["dense"], key=lambda r: -r[1])[:depth], "max")
        of = leg["dense_extra"]["sentence_of"]
        sent = {doc: of[doc] for doc in dict.fromkeys([*d, *k]) if doc in of}
        return ranked(_three(k, d, sent, 1 - alpha, w))

    lever(
        "dense: chunk + candidates' best sentence (z)",
        candidates_rescored,
        [(w, a, 50) for w in (0.25, 0.4, 0.5, 0.6) for a in alphas],
    )
