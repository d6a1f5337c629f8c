"""serverInfo, me and node."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import strawberry

from domain.answers import stored
from domain.documents import service as documents
from domain.feedback import service as feedback
from domain.jobs import store as job_store
from resolvers.answers import from_stored
from resolvers.feedback import to_feedback
from schema.common import Node, from_global_id
from schema.context import Context
from schema.documents import Document
from schema.jobs import IngestionJob
from schema.search import RerankStrategy
from schema.server import KeywordBackend, PrincipalInfo, ServerInfo

# Not null: the released schema promises a String! (tests/test_schema_contract.py).
HIDDEN = "hidden"


def _version() -> str:
    try:
        return version("ragql")
    except PackageNotFoundError:
        return "0.0.0+local"


def server_info(info: strawberry.Info[Context]) -> ServerInfo:
    s = info.context.services
    bm25 = s.keyword_backend == "bm25"
    # Exact versions tell an attacker which CVEs to try: in production, admins only.
    versions = s.environment != "production" or info.context.principal.has_role("admin")
    return ServerInfo(
        version=_version(),
        environment=s.environment,
        embedding_model=s.embedder.name,
        embedding_dim=s.embedder.dim,
        keyword_backend=KeywordBackend.BM25 if bm25 else KeywordBackend.FULLTEXT,
        keyword_backend_note=(
            "BM25 via pg_textsearch"
            if bm25
            else "pg_textsearch is not installed on this server: keyword search uses built-in full text (ts_rank, no "
            "IDF), which ranks noticeably worse. Install pg_textsearch to get BM25."
        ),
        keyword_index_healthy=s.keyword_index.healthy if s.keyword_index else True,
        keyword_index_repaired_at_start=bool(s.keyword_index and s.keyword_index.repaired),
        database=s.database_kind,
        database_version=s.database_version if versions else HIDDEN,
        pgvector_version=s.pgvector_version if versions else HIDDEN,
        auth=info.context.facts.auth_description,
        rate_limits=info.context.facts.rate_limiter.backend,
        introspection=info.context.facts.introspection,
        providers=_providers(info.context),
        generator=s.answering.generator.name,
        rerankers=[RerankStrategy(r) for r in s.reranking.available()],
        job_queue="pgqueuer",
        in_process_worker=info.context.facts.in_process_worker,
    )


def _providers(context: Context) -> list[str]:
    s = context.services
    out = [f"embedding:{s.embedder.name}", f"generator:{s.answering.generator.name}"]
    for strategy in s.reranking.available():
        model = s.reranking.model(strategy)
        if model:
            out.append(f"rerank:{strategy.lower()}:{model}")
    return out


def me(info: strawberry.Info[Context]) -> PrincipalInfo:
    p = info.context.principal
    return PrincipalInfo(
        tenant=p.tenant_id, subject=p.subject, roles=list(p.roles), authenticated=p.authenticated, method=p.method
    )


async def node(info: strawberry.Info[Context], id: strawberry.ID) -> Node | None:
    type_name, ident = from_global_id(id)
    if type_name == "Document":
        row = await documents.get(db=info.context.services.db, tenant_id=info.context.tenant_id, document_id=ident)
        return Document.from_row(row) if row else None
    if type_name == "Answer":
        found = await stored.load(info.context.services.db, info.context.tenant_id, ident)
        return from_stored(found) if found else None
    if type_name == "Feedback":
        event = await feedback.get(info.context.services.db, info.context.tenant_id, ident)
        return await to_feedback(info, event) if event else None
    if type_name == "IngestionJob":
        job = await job_store.find(info.context.services.db, info.context.tenant_id, ident)
        return IngestionJob.from_row(job) if job else None
    return None
