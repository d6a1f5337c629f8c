"""Retrieval quality over a BEIR set: nDCG@10 and Recall@100 for each (mode, fusion) run.

The search itself is passed in (`ragql eval` hands in the served search service), so what is
measured is what the API returns. BEIR's `ignore_identical_ids` rule, for sets whose queries are
also documents (Quora, ArguAna, CQADupStack), drops a hit whose id equals the query's id before
scoring: otherwise the query finds itself first and the figure is inflated."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from domain.errors import InvalidInput
from domain.evaluation.beir import BeirSet
from domain.evaluation.error_codes import EvaluationErrorCode
from domain.evaluation.metrics import ndcg_at_k, recall_at_k
from domain.retrieval.fusion import FusionMethod
from domain.retrieval.search import Mode

MODES: tuple[Mode, ...] = ("KEYWORD", "DENSE", "HYBRID")
FUSIONS: tuple[FusionMethod, ...] = ("ZSCORE", "RRF", "RELATIVE_SCORE", "LEARNED")
NDCG_AT, RECALL_AT = 10, 100


@dataclass(frozen=True)
class RunSpec:
    mode: Mode
    fusion: FusionMethod | None = None  # hybrid only

    @property
    def label(self) -> str:
        return f"{self.mode.lower()} {self.fusion}" if self.fusion else self.mode.lower()


@dataclass(frozen=True)
class RunScore:
    spec: RunSpec
    ndcg_at_10: float
    recall_at_100: float
    queries: int


# (query text, run) -> external ids of the hits, best first, at least RECALL_AT + 1 deep.
Searcher = Callable[[str, RunSpec], Awaitable[list[str]]]


def run_specs(modes: Sequence[str], fusions: Sequence[str]) -> list[RunSpec]:
    """One run per keyword and dense mode, and one per fusion method for hybrid."""
    wanted = [m.strip().upper() for m in modes if m.strip()]
    known = {f.upper(): f for f in FUSIONS}
    bad = [m for m in wanted if m not in MODES] + [f for f in fusions if f.strip().upper() not in known]
    if bad or not wanted:
        raise InvalidInput(
            EvaluationErrorCode.UNKNOWN_MODE,
            f"unknown mode or fusion {', '.join(bad) or '(none given)'}; modes are {', '.join(MODES)}, "
            f"fusions {', '.join(FUSIONS)}",
            field="modes",
        )
    specs: list[RunSpec] = []
    for mode in MODES:  # a fixed order, whatever order they were given in
        if mode not in wanted:
            continue
        if mode == "HYBRID":
            specs += [RunSpec(mode, known[f.strip().upper()]) for f in fusions]
        else:
            specs.append(RunSpec(mode))
    return specs


def without_identical(ranked: list[str], query_id: str) -> list[str]:
    return [doc for doc in ranked if doc != query_id]


async def evaluate(
    beir: BeirSet,
    specs: Sequence[RunSpec],
    search: Searcher,
    *,
    ignore_identical_ids: bool = False,
    on_query: Callable[[], None] = lambda: None,
) -> list[RunScore]:
    """Each run over every judged query with text; `on_query` is called after each search (the
    progress bar)."""
    qids = [q for q in beir.judged_queries() if beir.queries[q].strip()]
    scores: list[RunScore] = []
    for spec in specs:
        ndcg = recall = 0.0
        for qid in qids:
            ranked = await search(beir.queries[qid], spec)
            if ignore_identical_ids:
                ranked = without_identical(ranked, qid)
            ndcg += ndcg_at_k(ranked, beir.qrels[qid], NDCG_AT)
            recall += recall_at_k(ranked, beir.qrels[qid], RECALL_AT)
            on_query()
        n = max(1, len(qids))
        scores.append(RunScore(spec, ndcg / n, recall / n, len(qids)))
    return scores
