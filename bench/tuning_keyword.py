"""The keyword-side levers over bench/keyword_levers.py's stored legs (whole-document BM25, title
as a field, title repeated, RM3), for bench/tuning.py: each fused with the dense leg by z-score
as the default is, its parameters cross-validated on train."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.tuning import Run, aggregate, ranked
from domain.retrieval.fusion import fuse, zscores

Lever = Callable[[str, Run, Sequence[Any]], None]


def attach(leg_dir: Path, train: dict[str, Any], test: dict[str, Any]) -> list[str]:
    """Put each query's extra legs at leg["extra"]; the names of the legs stored (none: no file)."""
    path = leg_dir / "keyword-levers.json"
    if not path.exists():
        return []
    extra = json.loads(path.read_text())
    for split, legs in (("train", train), ("test", test)):
        for qid, leg in legs.items():
            leg["extra"] = extra[split][qid]
    return sorted(next(iter(extra["train"].values())))


def _dense(leg: dict[str, Any]) -> dict[str, float]:
    return aggregate(leg["dense"], "max")


def _keyword(leg: dict[str, Any]) -> dict[str, float]:
    return aggregate(leg["keyword"], "max")


def _added(base: dict[str, float], other: dict[str, float], weight: float) -> dict[str, float]:
    """BM25 is a sum over query terms (and, BM25F-like, over fields): a document missing from a
    leg's top rows scores about 0 there."""
    return {d: base.get(d, 0.0) + weight * other.get(d, 0.0) for d in dict.fromkeys([*base, *other])}


def _three(d: dict[str, float], k: dict[str, float], x: dict[str, float], alpha: float, w: float) -> dict[str, float]:
    """z-score fusion of three legs: dense alpha, then the keyword side split (1 - w) / w."""
    zd, zk, zx = zscores(d), zscores(k), zscores(x)
    fd, fk, fx = (min(z.values(), default=0.0) for z in (zd, zk, zx))
    keys = dict.fromkeys([*d, *k, *x])
    return {
        key: alpha * zd.get(key, fd) + (1 - alpha) * ((1 - w) * zk.get(key, fk) + w * zx.get(key, fx)) for key in keys
    }


def run_keyword_levers(names: list[str], lever: Lever, alphas: Sequence[float]) -> None:
    if not names:
        print("keyword levers: no keyword-levers.json (python -m bench eval --keyword-levers)", flush=True)
        return

    def replaced(name: str) -> Run:
        def run(leg: dict[str, Any], alpha: float) -> list[str]:
            return ranked(fuse(_dense(leg), aggregate(leg["extra"][name], "max"), method="ZSCORE", alpha=alpha))

        return run

    lever("keyword leg: whole-document BM25", replaced("doc"), alphas)

    def doc_and_chunk(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        return ranked(_three(_dense(leg), _keyword(leg), aggregate(leg["extra"]["doc"], "max"), alpha, w))

    lever("keyword: chunk + whole-document BM25 (z)", doc_and_chunk, [(w, a) for w in (0.25, 0.5) for a in alphas])
    lever("keyword leg: title repeated in the index", replaced("title2"), alphas)

    def title_field(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        k = _added(_keyword(leg), aggregate(leg["extra"]["title"], "max"), w)
        return ranked(fuse(_dense(leg), k, method="ZSCORE", alpha=alpha))

    lever(
        "title as its own BM25 field (+ w x title)",
        title_field,
        [(w, a) for w in (0.1, 0.25, 0.5, 1.0) for a in alphas],
    )

    def title_z(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
        w, alpha = p
        return ranked(_three(_dense(leg), _keyword(leg), aggregate(leg["extra"]["title"], "max"), alpha, w))

    lever("title BM25 as a third leg (z)", title_z, [(w, a) for w in (0.1, 0.2, 0.35) for a in alphas])
    rm3 = [n for n in names if n.startswith("rm3-")]
    for source in ("keyword", "hybrid"):
        settings = [n for n in rm3 if n.startswith(f"rm3-{source}-")]

        def rm3_run(leg: dict[str, Any], p: tuple[str, float, float]) -> list[str]:
            name, lam, alpha = p
            k = _added(_keyword(leg), aggregate(leg["extra"][name], "max"), lam)
            return ranked(fuse(_dense(leg), k, method="ZSCORE", alpha=alpha))

        grid = [(n, lam, a) for n in settings for lam in (0.1, 0.2, 0.35, 0.5) for a in alphas]
        lever(f"RM3 on the keyword leg (feedback: {source} top)", rm3_run, grid)
