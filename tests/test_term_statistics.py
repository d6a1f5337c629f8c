"""A long query's keyword terms come from a sample of the tenant's chunks. Once a tenant has a
sample, an expired one is refreshed in the background: the query that finds it expired does not
wait for a new sample (only a tenant's first long query does), and the refresh does land."""

from __future__ import annotations

import asyncio

import pytest

from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.retrieval import long_query
from domain.retrieval.long_query import TermStatistics, _Stats
from tests.conftest import ingest_docs

WORDS = " ".join(f"word{i}" for i in range(60))  # more distinct words than the cap: terms are chosen


async def test_an_expired_sample_is_refreshed_without_waiting(
    db: Database, embedder: LocalEmbedder, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ingest_docs(db, embedder, tenant, [DocumentInput(title="Glaciers", text="Glaciers retreat in summer.")])
    terms = TermStatistics(db)
    await terms.informative(tenant, WORDS)
    first = terms._cache[tenant]
    assert first.chunks == 1
    # given a sample past its time to live, and a second document since
    first.at -= long_query.STATS_TTL_S + 1
    await ingest_docs(db, embedder, tenant, [DocumentInput(title="Reefs", text="Corals bleach in warm water.")])
    # The refresh is held back until the query has returned: on a loaded machine it could otherwise
    # land during the query's own lexeme read, and "answered from the old sample" would be a race.
    release = asyncio.Event()
    load = terms._load

    async def held_load(tenant_id: str) -> _Stats:
        await release.wait()
        return await load(tenant_id)

    monkeypatch.setattr(terms, "_load", held_load)
    # when a long query arrives, it is answered from the old sample at once (a query that waited
    # for the refresh would wait for `release`, and time out here)
    await asyncio.wait_for(terms.informative(tenant, WORDS), timeout=30)
    assert terms._cache[tenant] is first
    assert tenant in terms._refreshing
    # then the refresh lands in the background with the new chunk counted
    release.set()
    await asyncio.wait_for(terms._refreshing[tenant], timeout=30)
    assert terms._cache[tenant].chunks == 2
    assert tenant not in terms._refreshing
