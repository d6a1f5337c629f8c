"""The encoders' memory of query vectors: least recently used goes first, and 0 turns it off
(RAGQL_EMBEDDING_CACHE_TTL_S=0 asks for that, so a load of repeated queries still encodes each)."""

from __future__ import annotations

import numpy as np
import pytest

from api.bootstrap import build_embedder
from api.settings import Settings
from domain.providers.query_lru import DEFAULT_CAPACITY, QueryVectorLRU
from domain.retrieval.long_query import embed_any_length


def _vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


def test_the_least_recently_used_query_goes_first() -> None:
    lru = QueryVectorLRU(2)
    lru.put("a", _vec(1))
    lru.put("b", _vec(2))
    assert lru.get("a") is not None  # "a" is now the most recent
    lru.put("c", _vec(3))
    assert lru.get("b") is None
    assert lru.get("a") is not None and lru.get("c") is not None
    assert len(lru) == 2


def test_capacity_zero_keeps_nothing() -> None:
    lru = QueryVectorLRU(0)
    lru.put("a", _vec(1))
    assert lru.get("a") is None
    assert len(lru) == 0


def test_a_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        QueryVectorLRU(-1)


@pytest.mark.parametrize(("ttl", "capacity"), [(0.0, 0), (60.0, DEFAULT_CAPACITY)])
def test_the_embedding_cache_setting_reaches_the_encoder(ttl: float, capacity: int) -> None:
    embedder = build_embedder(Settings(embedding_cache_ttl_s=ttl))
    assert embedder.query_cache.capacity == capacity  # type: ignore[attr-defined]


async def test_with_the_cache_off_a_repeated_query_is_encoded_again() -> None:
    embedder = build_embedder(Settings(embedding_cache_ttl_s=0.0))
    before = embedder.stats.rows  # type: ignore[attr-defined]
    first = await embedder.embed_query("does vitamin d lower blood pressure")
    again = await embedder.embed_query("does vitamin d lower blood pressure")
    assert np.allclose(first, again)
    assert embedder.stats.rows - before == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(("ttl", "encoded_again"), [(0.0, True), (60.0, False)])
async def test_a_pasted_paragraph_is_remembered_only_with_the_cache_on(ttl: float, encoded_again: bool) -> None:
    """A paragraph past the model's window is pooled from several windows; that pooled vector is
    kept in the same memory as a typed query's, and forgotten with it."""
    embedder = build_embedder(Settings(embedding_cache_ttl_s=ttl))
    paragraph = " ".join(f"vitamin d{n} lowers blood pressure in trial {n}." for n in range(80))
    first = await embed_any_length(embedder, paragraph)
    before = embedder.stats.rows  # type: ignore[attr-defined]
    again = await embed_any_length(embedder, paragraph)
    assert np.allclose(first, again)
    assert (embedder.stats.rows > before) is encoded_again  # type: ignore[attr-defined]
    # And the paragraph's typed-query entry (its first window alone) is a different vector.
    assert not np.allclose(await embedder.embed_query(paragraph), first)
