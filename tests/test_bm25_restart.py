"""Keyword search must survive a PostgreSQL restart (see domain/retrieval/index_health.py)."""

from __future__ import annotations

from pathlib import Path

import pgserver
import pgserver._commands
from sqlalchemy import text

from api import embedded
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.index_health import ensure_bm25_healthy
from domain.retrieval.tenant_index import chunk_partition, keyword_index
from domain.tenancy import ensure_tenant
from tests.conftest import ingest_docs


def search_sql(tenant: str) -> str:
    return (
        f"SELECT d.external_id FROM {chunk_partition(tenant)} c JOIN documents d ON d.id = c.document_id "  # noqa: S608
        f"ORDER BY c.search_text <@> to_bm25query(:q, '{keyword_index(tenant)}') LIMIT 3"
    )


async def test_keyword_search_survives_a_server_restart(tmp_path: Path, embedder: LocalEmbedder) -> None:
    pgdata = tmp_path / "pg"
    url = embedded.start(pgdata, cleanup_mode="delete")
    server = pgserver.get_server(pgdata)
    db = Database(url)
    try:
        await migrate(db, embedding_dim=384)
        # three tenants: the probe checks one chunk in each tenant's own index
        tenants = ["default", "second", "third"]
        for tenant in tenants[1:]:
            await ensure_tenant(db, tenant)
        words = ["otters", "puffins", "lynxes", "walruses"]
        for tenant in tenants:
            inputs = [
                DocumentInput(title=f"Note {i}", text=f"Observations of {w} in the wild.", external_id=w)
                for i, w in enumerate(words)
            ]
            await ingest_docs(db, embedder, tenant, inputs)
        # when the server restarts under us
        await db.dispose()
        # pg_ctl is generated at import time, so mypy cannot see it.
        pg_ctl = getattr(pgserver._commands, "pg_ctl")  # noqa: B009
        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user=server.system_user)
        # then the start-up check leaves a working index, whatever state the restart left it in
        health = await ensure_bm25_healthy(db, "bm25")
        assert health.healthy and health.probed == 3
        async with db.engine.connect() as conn:
            for tenant in tenants:
                found = (await conn.execute(text(search_sql(tenant)), {"q": "puffins"})).scalars().all()
                assert found[0] == "puffins", tenant
    finally:
        await db.dispose()
        server.cleanup()
