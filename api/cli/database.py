"""`ragql migrate`, `ragql reindex`, `ragql rebuild-profiles`, `ragql train-recs` and `ragql
embed-sentences`: maintenance on the configured database."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from api.cli.core import err, out, run, settings


def migrate(ctx: typer.Context) -> None:
    """Apply the database migrations."""
    from api.bootstrap import database_url
    from domain.persistence.database import Database
    from domain.persistence.migrate import migrate as apply

    s = settings(ctx)

    async def go() -> None:
        db = Database(database_url(s)[0])
        try:
            # From settings, not from loading the model: a migration job needs no model in memory.
            # `ragql serve` checks the stored dimension against the model it loads.
            await apply(db, embedding_dim=s.embedding_dim)
        finally:
            await db.dispose()

    run(go())
    out().print("migrations applied")


def reindex(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option(help="only probe the BM25 index; exit 1 if it has drifted")] = False,
) -> None:
    """Rebuild the BM25 and HNSW indexes (after heavy updates or deletes)."""
    from sqlalchemy import text

    from api.bootstrap import database_url
    from domain.persistence.database import Database
    from domain.persistence.migrate import keyword_backend
    from domain.retrieval.index_health import ensure_bm25_healthy

    s = settings(ctx)

    async def go() -> bool:
        db = Database(database_url(s)[0])
        try:
            backend = await keyword_backend(db)
            if check:
                health = await ensure_bm25_healthy(db, backend, repair=False)
                out().print(f"keyword backend {backend}: healthy={health.healthy} (probed {health.probed} chunks)")
                if not health.healthy:
                    err().print("the BM25 index has drifted: run `ragql reindex` to rebuild it", markup=False)
                return health.healthy
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for index in ("chunks_bm25_idx", "chunks_embedding_hnsw"):
                    if (await conn.execute(text("SELECT to_regclass(:i)"), {"i": index})).scalar():
                        with err().status(f"reindexing {index} …"):
                            await conn.execute(text(f"REINDEX INDEX {index}"))
                        out().print(f"reindexed {index}")
            return True
        finally:
            await db.dispose()

    if not run(go()):
        raise typer.Exit(1)


def rebuild_profiles(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="only this tenant (default: every tenant)")] = None,
) -> None:
    """Recompute user profiles and co-engagement from the feedback events."""
    from api.bootstrap import build_learning, database_url
    from domain.feedback.rebuild import rebuild_tenant, tenant_ids, users_of
    from domain.persistence.database import Database

    s = settings(ctx)
    learning = build_learning(s)

    async def go() -> None:
        db = Database(database_url(s)[0])
        try:
            await db.enable_vector_codec()
            tenants = [tenant] if tenant else await tenant_ids(db)
            for t in tenants:
                total = len(await users_of(db, t))
                with Progress(
                    TextColumn("tenant {task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("users"),
                    TimeRemainingColumn(),
                    console=err(),
                ) as progress:
                    task = progress.add_task(t, total=total)

                    def advance(n: int, task: TaskID = task, progress: Progress = progress) -> None:
                        progress.advance(task, n)

                    report = await rebuild_tenant(db, t, learning, progress=advance)
                out().print(f"tenant {t}: {report.users} profiles, {report.pairs} co-engagement pairs rebuilt")
        finally:
            await db.dispose()

    run(go())


def train_recs(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="only this tenant (default: every tenant)")] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="queue it for `ragql worker` instead of training here")
    ] = False,
) -> None:
    """Train the recommendation model (ALS) from the feedback events, as a new version."""
    from api.bootstrap import database_url
    from domain.feedback.rebuild import tenant_ids
    from domain.jobs import training_job
    from domain.persistence.database import Database
    from domain.recommendations.training import train_tenant

    s = settings(ctx)

    async def go() -> None:
        db = Database(database_url(s)[0])
        try:
            await db.enable_vector_codec()
            for t in [tenant] if tenant else await tenant_ids(db):
                if queue:
                    job = await training_job.enqueue(db, t)
                    said = f"queued as job {job}" if job else "already queued or running"
                    out().print(f"tenant {t}: training {said}", markup=False)
                    continue
                with Progress(TextColumn("train {task.description}"), BarColumn(), console=err()) as progress:
                    task = progress.add_task(t, total=3)

                    def step(message: str, task: TaskID = task, progress: Progress = progress, name: str = t) -> None:
                        progress.update(task, advance=1, description=f"{name}: {message}")

                    report = await train_tenant(db, t, progress=step, max_signals=s.recs_train_max_signals)
                if report.version is None:
                    out().print(f"tenant {t}: no feedback yet, nothing to train (content and popularity serve)")
                    continue
                out().print(
                    f"tenant {t}: model version {report.version} from {report.events} events "
                    f"({report.users} users, {report.items} items, {report.neighbour_pairs} neighbour pairs); "
                    f"fit {report.fit_ms / 1000:.1f}s, total {report.took_ms / 1000:.1f}s",
                    markup=False,
                )
        finally:
            await db.dispose()

    run(go())


def embed_sentences(
    ctx: typer.Context,
    tenant: Annotated[
        list[str] | None, typer.Option(help="only this tenant (repeatable); default: every tenant")
    ] = None,
) -> None:
    """Embed and store the sentences of every chunk that has none yet, so that no answer embeds them.
    Answers store what they embed anyway; this does it ahead of time (resumable, idempotent)."""
    from sqlalchemy import text

    from api.bootstrap import build_embedder, database_url
    from domain.answers.sentence_vectors import backfill
    from domain.persistence.database import Database

    s = settings(ctx)

    async def go() -> None:
        db = Database(database_url(s)[0])
        try:
            embedder = build_embedder(s)
            async with db.engine.connect() as conn:
                tenants = tenant or list((await conn.execute(text("SELECT id FROM tenants ORDER BY id"))).scalars())
            for t in tenants:
                with err().status(f"embedding sentences of {t} …"):
                    n = await backfill(db, embedder, t)
                out().print(f"{t}: {n} chunks' sentences embedded")
        finally:
            await db.dispose()

    run(go())


def register(app: typer.Typer) -> None:
    app.command()(embed_sentences)
    app.command()(migrate)
    app.command()(reindex)
    app.command()(rebuild_profiles)
    app.command()(train_recs)
