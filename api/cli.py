"""The `ragql` command: what an operator runs on a server (serve, migrate, reindex, rebuild-profiles,
schema, dev-token, export-model). Benches and evaluations are `python -m bench` in a checkout."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType

from pydantic import ValidationError

from api.settings import Settings
from domain.auth.apikeys import ROLES
from domain.errors import StartupError


def _serve(settings: Settings, _args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ws="websockets-sansio",
    )


def _migrate(settings: Settings, _args: argparse.Namespace) -> None:
    from api.bootstrap import database_url
    from domain.persistence.database import Database
    from domain.persistence.migrate import migrate

    async def run() -> None:
        url, _ = database_url(settings)
        db = Database(url)
        try:
            # From settings, not from loading the model: a migration job needs no model in memory.
            # `ragql serve` checks the stored dimension against the model it loads.
            await migrate(db, embedding_dim=settings.embedding_dim)
        finally:
            await db.dispose()
        print("migrations applied")

    asyncio.run(run())


def _reindex(settings: Settings, args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from api.bootstrap import database_url
    from domain.persistence.database import Database
    from domain.persistence.migrate import keyword_backend
    from domain.retrieval.index_health import ensure_bm25_healthy

    async def run() -> None:
        db = Database(database_url(settings)[0])
        try:
            backend = await keyword_backend(db)
            if args.check:
                health = await ensure_bm25_healthy(db, backend, repair=False)
                print(f"keyword backend {backend}: healthy={health.healthy} (probed {health.probed} chunks)")
                if not health.healthy:
                    raise SystemExit(1)
                return
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for index in ("chunks_bm25_idx", "chunks_embedding_hnsw"):
                    if (await conn.execute(text("SELECT to_regclass(:i)"), {"i": index})).scalar():
                        print(f"reindexing {index} …", flush=True)
                        await conn.execute(text(f"REINDEX INDEX {index}"))
        finally:
            await db.dispose()

    asyncio.run(run())


def _export_model(settings: Settings, args: argparse.Namespace) -> None:
    """Run at install or image build so the first start loads the export instead of making it."""
    from domain.providers.onnx_export import OnnxBackend, ensure_exported

    backends: list[OnnxBackend] = ["onnx", "onnx-int8"] if args.all else []
    if not backends:
        if settings.embedding_backend == "torch":
            print("RAGQL_EMBEDDING_BACKEND=torch needs no export")
            return
        backends = [settings.embedding_backend]
    for backend in backends:
        model = ensure_exported(settings.model_cache_dir, backend)
        print(f"{backend}: {model.model_file}")


def _rebuild_profiles(settings: Settings, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from api.bootstrap import build_learning, database_url
    from domain.feedback.rebuild import rebuild_tenant, tenant_ids, users_of
    from domain.persistence.database import Database

    learning = build_learning(settings)

    async def run() -> None:
        db = Database(database_url(settings)[0])
        try:
            await db.enable_vector_codec()
            tenants = [args.tenant] if args.tenant else await tenant_ids(db)
            for tenant in tenants:
                total = len(await users_of(db, tenant))
                with tqdm(total=total, desc=f"tenant {tenant}", unit="user", file=sys.stderr) as bar:
                    report = await rebuild_tenant(db, tenant, learning, progress=bar.update)
                print(f"tenant {tenant}: {report.users} profiles, {report.pairs} co-engagement pairs rebuilt")
        finally:
            await db.dispose()

    asyncio.run(run())


def _dev_token(settings: Settings, args: argparse.Namespace) -> None:
    from api.auth.tokens import JwtVerifier
    from api.bootstrap import jwt_config

    if settings.env == "production":
        raise StartupError(
            "dev-token refuses to mint tokens in production: issue them from your identity provider, "
            "or create an API key with the createApiKey mutation"
        )
    roles = sorted(set(args.role or ["reader"]), key=ROLES.index)
    token = JwtVerifier(jwt_config(settings)).issue(
        subject=args.subject, tenant=args.tenant, roles=roles, ttl_s=args.ttl
    )
    print(token)
    print(
        f"# tenant={args.tenant} roles={','.join(roles)} expires in {args.ttl}s; send it as "
        "'Authorization: Bearer <token>'",
        file=sys.stderr,
    )


def _schema(_settings: Settings, _args: argparse.Namespace) -> None:
    from schema.root import build_schema

    print(build_schema().as_str())


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (what Docker, systemd and Kubernetes send) must leave through the interpreter's
    normal exit, as SIGINT does, so that atexit hooks run: pgserver stops the embedded PostgreSQL
    in one. Python's default for SIGTERM kills the process on the spot and skips them all. uvicorn
    takes the signal over while it serves, shuts down gracefully, puts this handler back and
    raises the signal again, so this is what finally ends `ragql serve`."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        # A second SIGTERM must not interrupt the cleanup it started (pg_ctl stop).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The shutdown was asked for and has completed: that is a success, not a crash.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ragql", description="GraphQL retrieval service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve /graphql on RAGQL_HOST:RAGQL_PORT")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("schema", help="print the GraphQL schema (SDL)")
    ex = sub.add_parser("export-model", help="export the local embedding model to ONNX into RAGQL_MODEL_CACHE_DIR")
    ex.add_argument("--all", action="store_true", help="every ONNX backend, not only RAGQL_EMBEDDING_BACKEND's")
    dt = sub.add_parser("dev-token", help="print a JWT for local use, signed with RAGQL_JWT_SECRET")
    dt.add_argument("--tenant", default="default", help="the tenant the token acts in")
    dt.add_argument("--role", action="append", choices=ROLES, default=[], help="repeatable; default reader")
    dt.add_argument("--subject", default="dev-user", help="the token's subject (sub)")
    dt.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    rp = sub.add_parser("rebuild-profiles", help="recompute user profiles and co-engagement from feedback events")
    rp.add_argument("--tenant", help="only this tenant (default: every tenant)")
    rx = sub.add_parser("reindex", help="rebuild the BM25 and HNSW indexes (after heavy updates or deletes)")
    rx.add_argument("--check", action="store_true", help="only probe the BM25 index; exit 1 if it has drifted")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_cleanly_on_sigterm()
    try:
        settings = Settings()
        handlers = {
            "serve": _serve,
            "migrate": _migrate,
            "reindex": _reindex,
            "rebuild-profiles": _rebuild_profiles,
            "schema": _schema,
            "dev-token": _dev_token,
            "export-model": _export_model,
        }
        handlers[args.command](settings, args)
    except StartupError as exc:
        print(f"ragql: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print(f"ragql: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
