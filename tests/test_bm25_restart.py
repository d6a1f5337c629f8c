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
from tests.conftest import ingest_docs

SEARCH = (
    "SELECT d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id "
    "ORDER BY c.search_text <@> to_bm25query(:q, 'chunks_bm25_idx') LIMIT 3"
)


async def test_keyword_search_survives_a_server_restart(tmp_path: Path, embedder: LocalEmbedder) -> None:
    pgdata = tmp_path / "pg"
    url = embedded.start(pgdata, cleanup_mode="delete")
    server = pgserver.get_server(pgdata)
    db = Database(url)
    try:
        await migrate(db, embedding_dim=384)
        inputs = [
            DocumentInput(title=f"Note {i}", text=f"Observations of {w} in the wild.", external_id=w)
            for i, w in enumerate(["otters", "puffins", "lynxes", "walruses"])
        ]
        await ingest_docs(db, embedder, "default", inputs)
        # when the server restarts under us
        await db.dispose()
        # pg_ctl is generated at import time, so mypy cannot see it.
        pg_ctl = getattr(pgserver._commands, "pg_ctl")  # noqa: B009
        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user=server.system_user)
        # then the start-up check leaves a working index, whatever state the restart left it in
        health = await ensure_bm25_healthy(db, "bm25")
        assert health.healthy and health.probed == 3
        async with db.engine.connect() as conn:
            found = (await conn.execute(text(SEARCH), {"q": "puffins"})).scalars().all()
        assert found[0] == "puffins"
    finally:
        await db.dispose()
        server.cleanup()
