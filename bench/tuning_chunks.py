"""Chunk size and overlap (bench/chunkings.py's stored legs) and fusion details, for bench/tuning.py:
each fused with the other leg by z-score as the default is, cross-validated on train.

- each dense chunking alone, by exact cosine (the served 200/48 chunks too, from the eval store's
  own vectors: `dense chunks c200o48` is the reference the others are compared with);
- each keyword chunking alone (BM25 over the same chunker's texts at that size);
- the pair (dense chunking, keyword chunking, alpha) chosen per fold: chunks of one size for
  both legs, or the keyword leg's larger than the dense leg's;
- the fusion's normalisation: z-score statistics over each leg's top n documents only, and the
  depth of each leg (how many chunk rows it returns), which the served search ties to `first`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.tuning import Rows, aggregate, ranked
from bench.tuning_keyword import Lever
from domain.retrieval.fusion import fuse, zscores

SERVED = "c200o48"
_TAG = re.compile(r"^(dense|keyword)-(c\d+o\d+)$")


def attach(leg_dir: Path, train: dict[str, Any], test: dict[str, Any]) -> dict[str, list[str]]:
    """Each query's chunking legs at leg["chunkings"][side][tag]; the tags stored per side."""
    found: dict[str, list[str]] = {"dense": [], "keyword": []}
    for path in sorted(leg_dir.glob("*-c*o*.json")):
        m = _TAG.match(path.stem)
        if not m:
            continue
        side, tag = m.groups()
        stored = json.loads(path.read_text())
        for split, legs in (("train", train), ("test", test)):
            for qid, leg in legs.items():
                leg.setdefault("chunkings", {"dense": {}, "keyword": {}})[side][tag] = stored[split][qid]
        found[side].append(tag)
        docs_path = leg_dir / f"{path.stem}-docs.npz"
        if side == "dense" and docs_path.exists():
            with np.load(docs_path) as full:
                index = {str(d): i for i, d in enumerate(full["docs"])}
                for split, legs in (("train", train), ("test", test)):
                    matrix = full[split]
                    for row, qid in enumerate(sorted(legs)):
                        legs[qid].setdefault("doc_scores", {})[tag] = (index, matrix[row])
    return found


def _rows(leg: dict[str, Any], side: str, tag: str) -> Rows:
    """A chunking's rows; the served chunking's are its stored legs unless an exact dense leg of
    the same vectors was stored (then all dense settings are searched the same way)."""
    stored: Rows | None = leg.get("chunkings", {}).get(side, {}).get(tag)
    if stored is not None:
        return stored
    if tag != SERVED:
        raise KeyError(f"no {side} legs stored for {tag}")
    served: Rows = leg[side]
    return served


def zscore_top(dense: dict[str, float], keyword: dict[str, float], alpha: float, n: int) -> dict[str, float]:
    """z-score fusion with each leg's mean and spread taken over its top `n` documents only, so
    the long tail a deeper leg brings does not change the scale of the head."""

    def scaled(scores: dict[str, float]) -> dict[str, float]:
        head = sorted(scores.values(), reverse=True)[:n]
        if not head:
            return {}
        mean = sum(head) / len(head)
        std = math.sqrt(sum((v - mean) ** 2 for v in head) / len(head)) or 1.0
        return {k: (v - mean) / std for k, v in scores.items()}

    zd, zk = scaled(dense), scaled(keyword)
    fd, fk = min(zd.values(), default=0.0), min(zk.values(), default=0.0)
    return {k: alpha * zd.get(k, fd) + (1 - alpha) * zk.get(k, fk) for k in dict.fromkeys([*dense, *keyword])}


def zscore_filled(
    dense: dict[str, float], keyword: dict[str, float], missing: dict[str, float], alpha: float
) -> dict[str, float]:
    """z-score fusion where a keyword-only document gets its real dense score (`missing`), scaled by
    the dense leg's own statistics, instead of the leg's lowest z-score."""
    values = list(dense.values())
    mean = sum(values) / max(1, len(values))
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values))) or 1.0
    zd = {k: (v - mean) / std for k, v in {**dense, **missing}.items()}
    zk = zscores(keyword)
    fd, fk = min(zd.values(), default=0.0), min(zk.values(), default=0.0)
    return {k: alpha * zd.get(k, fd) + (1 - alpha) * zk.get(k, fk) for k in dict.fromkeys([*dense, *keyword])}


def run_chunk_levers(found: dict[str, list[str]], lever: Lever, alphas: list[float]) -> None:
    if not found["dense"] and not found["keyword"]:
        print("chunk levers: no dense-c*/keyword-c* legs (python -m bench eval --chunkings)", flush=True)
    for side in ("dense", "keyword"):
        for tag in found[side]:

            def run(leg: dict[str, Any], alpha: float, side: str = side, tag: str = tag) -> list[str]:
                d = aggregate(_rows(leg, "dense", tag if side == "dense" else SERVED), "max")
                k = aggregate(_rows(leg, "keyword", tag if side == "keyword" else SERVED), "max")
                return ranked(fuse(d, k, method="ZSCORE", alpha=alpha))

            lever(f"{side} chunks {tag} ({'exact' if side == 'dense' else 'BM25'})", run, alphas)
    dense_tags = list(dict.fromkeys([SERVED, *found["dense"]]))
    keyword_tags = list(dict.fromkeys([SERVED, *found["keyword"]]))
    if len(dense_tags) > 1 or len(keyword_tags) > 1:

        def pair(leg: dict[str, Any], p: tuple[str, str, float]) -> list[str]:
            d = aggregate(_rows(leg, "dense", p[0]), "max")
            k = aggregate(_rows(leg, "keyword", p[1]), "max")
            return ranked(fuse(d, k, method="ZSCORE", alpha=p[2]))

        grid = [(d, k, a) for d in dense_tags for k in keyword_tags for a in alphas]
        lever("chunking pair (dense, keyword, alpha) per fold", pair, grid)
        same = [(t, t, a) for t in dense_tags if t in keyword_tags for a in alphas]
        lever("chunking, one size for both legs, per fold", pair, same)

    for tag in [t for t in dense_tags if t in found["dense"]]:

        def filled(leg: dict[str, Any], alpha: float, tag: str = tag) -> list[str]:
            if tag not in leg.get("doc_scores", {}):
                raise KeyError(f"no dense-{tag}-docs.npz")
            index, full = leg["doc_scores"][tag]
            d = aggregate(_rows(leg, "dense", tag), "max")
            k = aggregate(_rows(leg, "keyword", SERVED), "max")
            return ranked(zscore_filled(d, k, {doc: float(full[index[doc]]) for doc in k if doc not in d}, alpha))

        lever(f"dense {tag}: true cosine for keyword-only docs", filled, alphas)

    def top_n(leg: dict[str, Any], p: tuple[int, float]) -> list[str]:
        d, k = aggregate(leg["dense"], "max"), aggregate(leg["keyword"], "max")
        return ranked(zscore_top(d, k, p[1], p[0]))

    lever("z-score statistics over each leg's top n docs", top_n, [(n, a) for n in (10, 20, 50, 100) for a in alphas])

    def depth(leg: dict[str, Any], p: tuple[int, float]) -> list[str]:
        # The stored rows come in the statement's order, not by score: the top rows first.
        d = aggregate(sorted(leg["dense"], key=lambda r: -r[1])[: p[0]], "max")
        k = aggregate(sorted(leg["keyword"], key=lambda r: -r[1])[: p[0]], "max")
        return ranked(fuse(d, k, method="ZSCORE", alpha=p[1]))

    lever("leg depth (chunk rows per leg: 20/50/100/200)", depth, [(n, a) for n in (20, 50, 100, 200) for a in alphas])
