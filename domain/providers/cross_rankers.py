"""Cross-rankers score (query, text) pairs directly. Cohere Rerank is the hosted one."""

from __future__ import annotations

from typing import Protocol

from domain.providers.llm import ProviderFailure, classify


class CrossRanker(Protocol):
    name: str

    async def score(self, query: str, texts: list[str]) -> dict[int, float]:
        """Relevance per input index; indexes the provider did not return are absent."""
        ...


class CohereReranker:
    """Cohere Rerank through the official v2 client. `base_url` points it at a proxy or a test
    server; the SDK retries 429/5xx itself, `max_retries` bounds that."""

    def __init__(
        self, *, model: str, api_key: str, base_url: str | None, timeout_s: float, max_retries: int = 1
    ) -> None:
        import cohere

        self.name = model
        self._client = cohere.AsyncClientV2(
            api_key=api_key,
            base_url=base_url or "https://api.cohere.com",
            timeout=timeout_s,
            max_retries=max_retries,
            log_warning_experimental_features=False,
        )

    async def score(self, query: str, texts: list[str]) -> dict[int, float]:
        try:
            resp = await self._client.rerank(model=self.name, query=query, documents=texts, top_n=len(texts))
        except Exception as exc:
            raise _classify_cohere(exc) from exc
        scores: dict[int, float] = {}
        for result in resp.results:
            # An index outside the request is a provider bug; ignore it rather than trust it.
            if 0 <= result.index < len(texts) and result.index not in scores:
                scores[result.index] = float(result.relevance_score)
        return scores


def _classify_cohere(exc: BaseException) -> ProviderFailure:
    from cohere.core.api_error import ApiError

    if isinstance(exc, ApiError):
        status = exc.status_code or 0
        if status == 429:
            raw = (exc.headers or {}).get("retry-after")
            try:
                retry = float(raw) if raw else None
            except ValueError:
                retry = None
            return ProviderFailure("cohere", "rate_limited", f"HTTP 429 (Retry-After: {raw})", retry_after=retry)
        if status in (0, 200):
            return ProviderFailure("cohere", "bad_response", "unreadable response")
        return ProviderFailure("cohere", "unavailable", f"HTTP {status}")
    return classify("cohere", exc)
