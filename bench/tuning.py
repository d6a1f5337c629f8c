"""Offline levers over the stored per-chunk leg results (bench/legcache.py): each lever alone,
its parameter chosen by 5-fold cross-validation over the train queries (the CV figure is the mean
over held-out folds), then the setting chosen on all of train applied once to test.

`python -m bench tune` prints the table; nothing here queries the store."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from domain.evaluation.metrics import ndcg_at_k
from domain.retrieval.fusion import fuse
from domain.retrieval.learned import FEATURES, features

Rows = list[list[Any]]  # [[doc, score], ...] one per chunk
Run = Callable[[dict[str, Any], Any], list[str]]  # (query legs, parameter) -> ranked docs


def aggregate(rows: Rows, how: str, p: float = 0.0) -> dict[str, float]:
    per: dict[str, list[float]] = defaultdict(list)
    for doc, score in rows:
        per[doc].append(score)
    out = {}
    for doc, scores in per.items():
        scores.sort(reverse=True)
        if how == "max":
            out[doc] = scores[0]
        elif how == "top2":
            out[doc] = scores[0] + p * (scores[1] if len(scores) > 1 else 0.0)
        else:  # soft maximum: temperature p over the chunk scores
            top = scores[0]
            out[doc] = top + p * math.log(sum(math.exp((s - top) / p) for s in scores))
    return out


def ranked(scores: dict[str, float], k: int = 10) -> list[str]:
    return sorted(scores, key=lambda d: -scores[d])[:k]


def mean_ndcg(run: Run, legs: dict[str, Any], qrels: dict[str, dict[str, int]], qids: Sequence[str], p: Any) -> float:
    return sum(ndcg_at_k(run(legs[q], p), qrels[q], 10) for q in qids) / max(1, len(qids))


def cross_validate(
    run: Run, grid: Sequence[Any], legs: dict[str, Any], qrels: dict[str, dict[str, int]], folds: int = 5
) -> tuple[float, Any]:
    qids = sorted(qrels)
    random.Random(17).shuffle(qids)
    parts = [qids[i::folds] for i in range(folds)]
    # Each setting's nDCG per query, once: the folds only sum different subsets of it.
    per = [{q: ndcg_at_k(run(legs[q], p), qrels[q], 10) for q in qids} for p in grid]

    def best(subset: Sequence[str]) -> int:
        return max(range(len(grid)), key=lambda i: sum(per[i][q] for q in subset))

    held = 0.0
    for i, part in enumerate(parts):
        rest = [q for j, p in enumerate(parts) if j != i for q in p]
        chosen_i = best(rest)
        held += sum(per[chosen_i][q] for q in part)
    return held / len(qids), grid[best(qids)]


def zscore_run(agg_d: tuple[str, float] = ("max", 0.0), agg_k: tuple[str, float] = ("max", 0.0)) -> Run:
    def run(leg: dict[str, Any], alpha: float) -> list[str]:
        d, k = aggregate(leg["dense"], *agg_d), aggregate(leg["keyword"], *agg_k)
        return ranked(fuse(d, k, method="ZSCORE", alpha=alpha))

    return run


def adaptive_run(leg: dict[str, Any], p: tuple[float, float]) -> list[str]:
    """Alpha per query: the base alpha shifted toward the leg whose top score stands out more."""
    base, gain = p
    d, k = aggregate(leg["dense"], "max"), aggregate(leg["keyword"], "max")

    def spread(s: dict[str, float]) -> float:
        v = sorted(s.values(), reverse=True)
        if len(v) < 3:
            return 0.0
        mean = sum(v) / len(v)
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v)) or 1.0
        return (v[0] - mean) / std

    shift = gain * math.tanh(spread(d) - spread(k))
    alpha = min(1.0, max(0.0, base + shift))
    return ranked(fuse(d, k, method="ZSCORE", alpha=alpha))


def prf_run(leg: dict[str, Any], p: tuple[str, float]) -> list[str]:
    beta, alpha = p
    d = aggregate(leg["dense_prf"].get(beta, leg["dense"]), "max")
    return ranked(fuse(d, aggregate(leg["keyword"], "max"), method="ZSCORE", alpha=alpha))


def learned_train(legs: dict[str, Any], qrels: dict[str, dict[str, int]], qids: Sequence[str]) -> list[float]:
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for q in qids:
        d, k = aggregate(legs[q]["dense"], "max"), aggregate(legs[q]["keyword"], "max")
        for doc, row in features(d, k).items():
            xs.append(row)
            ys.append(1 if qrels[q].get(doc, 0) > 0 else 0)
    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(xs, ys)
    return [float(w) for w in model.coef_[0]]


def learned_run(leg: dict[str, Any], weights: list[float]) -> list[str]:
    d, k = aggregate(leg["dense"], "max"), aggregate(leg["keyword"], "max")
    return ranked({doc: sum(w * x for w, x in zip(weights, row, strict=True)) for doc, row in features(d, k).items()})


def learned_cv(legs: dict[str, Any], qrels: dict[str, dict[str, int]], folds: int = 5) -> float:
    qids = sorted(qrels)
    random.Random(17).shuffle(qids)
    parts = [qids[i::folds] for i in range(folds)]
    total = 0.0
    for i, part in enumerate(parts):
        rest = [q for j, p in enumerate(parts) if j != i for q in p]
        total += mean_ndcg(learned_run, legs, qrels, part, learned_train(legs, qrels, rest)) * len(part)
    return total / len(qids)


def run_tuning(
    leg_dir: Path,
    qrels_of: Callable[[str], dict[str, dict[str, int]]],
    weights_out: Path | None,
    only: str | None = None,
) -> None:
    train, test = (json.loads((leg_dir / f"legs-{s}.json").read_text()) for s in ("train", "test"))
    qtrain, qtest = qrels_of("train"), qrels_of("test")
    alphas = [0.3, 0.4, 0.5, 0.6, 0.7]
    rows: list[tuple[str, float, float, str]] = []

    def lever(name: str, run: Run, grid: Sequence[Any]) -> None:
        if only and only.lower() not in name.lower():
            return
        cv, chosen = cross_validate(run, grid, train, qtrain)
        rows.append((name, cv, mean_ndcg(run, test, qtest, sorted(qtest), chosen), repr(chosen)))
        print(f"{name:<44} train(CV) {cv:.4f}  test {rows[-1][2]:.4f}  chosen {chosen!r}", flush=True)

    fixed = zscore_run()
    rows.append(
        (
            "default: max/max, z-score alpha 0.5",
            mean_ndcg(fixed, train, qtrain, sorted(qtrain), 0.5),
            mean_ndcg(fixed, test, qtest, sorted(qtest), 0.5),
            "0.5",
        )
    )
    print(f"{rows[0][0]:<44} train     {rows[0][1]:.4f}  test {rows[0][2]:.4f}", flush=True)
    lever("z-score alpha (max/max)", fixed, alphas)
    for leg_name in ("dense", "keyword"):
        for how, grid in (("top2", [0.1, 0.25, 0.5, 1.0]), ("soft", [0.02, 0.05, 0.1, 0.5, 1.0])):

            def run(leg: dict[str, Any], p: tuple[float, float], how: str = how, leg_name: str = leg_name) -> list[str]:
                agg = (how, p[0])
                r = zscore_run(agg, ("max", 0.0)) if leg_name == "dense" else zscore_run(("max", 0.0), agg)
                return r(leg, p[1])

            lever(f"{leg_name} aggregation {how}", run, [(x, a) for x in grid for a in alphas])
    bm25: dict[str, Any] = {"k1=1.2 b=0.75": None}
    for path in sorted(leg_dir.glob("keyword-k*.json")):
        bm25[path.stem.removeprefix("keyword-").replace("-", " ").replace("k", "k1=").replace("b", "b=")] = json.loads(
            path.read_text()
        )
    if len(bm25) > 1:

        def bm25_run(leg: dict[str, Any], p: tuple[str, float, str]) -> list[str]:
            setting, alpha, qid = p[0], p[1], leg["_qid"]
            split = "train" if leg["_split"] == "train" else "test"
            rows = leg["keyword"] if bm25[setting] is None else bm25[setting][split][qid]
            d, k = aggregate(leg["dense"], "max"), aggregate(rows, "max")
            return ranked(fuse(d, k, method="ZSCORE", alpha=alpha))

        for split, legs in (("train", train), ("test", test)):
            for q, leg in legs.items():
                leg["_qid"], leg["_split"] = q, split
        lever(
            f"BM25 k1/b ({', '.join(bm25)})",
            lambda leg, p: bm25_run(leg, (p[0], p[1], "")),
            [(k, a) for k in bm25 for a in alphas],
        )
    lever("per-query alpha (score spread)", adaptive_run, [(b, g) for b in alphas for g in (0.0, 0.05, 0.1, 0.2)])
    lever("Rocchio on the query vector (top 3)", prf_run, [(b, a) for b in ("0.3", "0.6") for a in alphas])
    from bench.tuning_keyword import attach, run_keyword_levers

    run_keyword_levers(attach(leg_dir, train, test), lever, alphas)
    from bench import tuning_dense

    tuning_dense.run_dense_levers(tuning_dense.attach(leg_dir, train, test), lever, alphas)
    from bench import tuning_chunks

    tuning_chunks.run_chunk_levers(tuning_chunks.attach(leg_dir, train, test), lever, alphas)
    if only and only.lower() not in "learned":
        return
    cv = learned_cv(train, qtrain)
    weights = learned_train(train, qtrain, sorted(qtrain))
    test_ndcg = mean_ndcg(learned_run, test, qtest, sorted(qtest), weights)
    rows.append(("LEARNED (logistic over " + ", ".join(FEATURES) + ")", cv, test_ndcg, "weights"))
    print(f"{'LEARNED logistic fusion':<44} train(CV) {cv:.4f}  test {test_ndcg:.4f}", flush=True)
    if weights_out:
        weights_out.write_text(json.dumps({"features": list(FEATURES), "weights": weights}, indent=1) + "\n")
        print(f"wrote {weights_out}")
