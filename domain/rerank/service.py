"""Re-ranking strategies behind one call. A re-ranker can only improve the order: on a timeout, a
provider error, a missing configuration or unusable output, the fused order comes back unchanged,
with the strategy that actually ran and the reason. Nothing fails because a re-ranker did."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from domain.providers.cross_rankers import CrossRanker
from domain.providers.llm import ChatModel, ProviderFailure, Usage
from domain.rerank.listwise import listwise_rerank

Strategy = Literal["NONE", "COHERE", "LLM"]
log = logging.getLogger("ragql.rerank")


@dataclass(frozen=True)
class RerankConfig:
    timeout_s: float = 8.0
    max_candidates: int = 30  # only the head of the fused list is sent; the tail keeps its order
    window: int = 20
    step: int = 10


@dataclass
class RerankOutcome:
    requested: Strategy
    applied: Strategy
    order: list[int]  # a permutation of the candidate positions, best first
    scores: dict[int, float] = field(default_factory=dict)  # re-rank score by candidate position
    fallback_reason: str | None = None
    took_ms: float = 0.0
    usage: Usage | None = None


_HOW_TO_CONFIGURE = {
    "COHERE": "set RAGQL_COHERE_API_KEY (and RAGQL_COHERE_BASE_URL for a proxy)",
    "LLM": "set RAGQL_LLM_MODEL (and RAGQL_LLM_BASE_URL / RAGQL_LLM_API_KEY)",
}


class Reranking:
    def __init__(
        self,
        *,
        config: RerankConfig | None = None,
        cross: CrossRanker | None = None,
        chat: ChatModel | None = None,
    ) -> None:
        self.config = config or RerankConfig()
        self.cross = cross
        self.chat = chat

    def available(self) -> list[Strategy]:
        strategies: list[Strategy] = ["NONE"]
        if self.cross is not None:
            strategies.append("COHERE")
        if self.chat is not None:
            strategies.append("LLM")
        return strategies

    def model(self, strategy: Strategy) -> str | None:
        if strategy == "COHERE" and self.cross is not None:
            return self.cross.name
        if strategy == "LLM" and self.chat is not None:
            return self.chat.name
        return None

    async def rerank(
        self, strategy: Strategy, query: str, texts: list[str], *, context: str | None = None
    ) -> RerankOutcome:
        identity = list(range(len(texts)))
        if strategy == "NONE" or len(texts) < 2:
            return RerankOutcome(requested=strategy, applied="NONE", order=identity)
        if strategy not in self.available():
            reason = f"{strategy} re-ranking is not configured on this server: {_HOW_TO_CONFIGURE[strategy]}"
            return RerankOutcome(requested=strategy, applied="NONE", order=identity, fallback_reason=reason)

        head = min(len(texts), self.config.max_candidates)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                if strategy == "COHERE":
                    outcome = await self._cohere(query, texts[:head])
                else:
                    outcome = await self._llm(query, texts[:head], context)
        except TimeoutError:
            outcome = _fallback(strategy, head, f"{strategy} re-ranking timed out after {self.config.timeout_s:g}s")
        except ProviderFailure as exc:
            outcome = _fallback(strategy, head, f"{strategy} re-ranking failed ({exc.kind}: {exc.detail})")
        if outcome.fallback_reason:
            log.warning("rerank fallback: %s", outcome.fallback_reason)
        outcome.order.extend(range(head, len(texts)))
        outcome.took_ms = (time.perf_counter() - started) * 1000
        return outcome

    async def _cohere(self, query: str, texts: list[str]) -> RerankOutcome:
        assert self.cross is not None
        scores = await self.cross.score(query, texts)
        if not scores:
            return _fallback("COHERE", len(texts), "COHERE returned no usable scores")
        # Items the provider left out keep their fused order, after the scored ones.
        scored = sorted(scores, key=lambda i: -scores[i])
        rest = [i for i in range(len(texts)) if i not in scores]
        return RerankOutcome(requested="COHERE", applied="COHERE", order=scored + rest, scores=scores)

    async def _llm(self, query: str, texts: list[str], context: str | None) -> RerankOutcome:
        assert self.chat is not None
        result = await listwise_rerank(
            self.chat, query, texts, window=self.config.window, step=self.config.step, context=context
        )
        if result.unusable_windows == result.windows:
            return _fallback("LLM", len(texts), "LLM re-ranking gave no readable ranking")
        # A listwise ranking has no scores of its own; expose the position, 1.0 for the top item.
        n = len(result.order)
        scores = {position: (n - rank) / n for rank, position in enumerate(result.order)}
        reason = None
        if result.unusable_windows:
            reason = f"{result.unusable_windows} of {result.windows} LLM windows were unreadable and kept their order"
        return RerankOutcome(
            requested="LLM",
            applied="LLM",
            order=result.order,
            scores=scores,
            fallback_reason=reason,
            usage=result.usage,
        )


def _fallback(strategy: Strategy, size: int, reason: str) -> RerankOutcome:
    return RerankOutcome(requested=strategy, applied="NONE", order=list(range(size)), fallback_reason=reason)
