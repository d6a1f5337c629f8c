"""A bare JSON search route for `make bench` only (RAGQL_BENCH_ROUTE=1; off by default).

It makes the same domain call as the GraphQL `search` field, behind the same guard (identity,
body limits), so `ratio graphql_overhead` can divide one by the other in the same process. It is
not part of the API: no schema, no cost accounting, and it is never mounted unless asked for."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.graphql_router import ragql_state
from api.guard import PRINCIPAL_KEY
from domain.auth.principal import Principal
from domain.retrieval.search import SearchOptions

# Under /graphql so that the guard authenticates it exactly as it does /graphql.
BENCH_SEARCH_PATH = "/graphql-bench/search"


def add_bench_route(app: FastAPI) -> None:
    @app.post(BENCH_SEARCH_PATH)
    async def bench_search(request: Request) -> JSONResponse:
        principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_KEY)
        if principal is None or not principal.has_role("reader"):
            return JSONResponse({"error": "a reader's credential is required"}, status_code=403)
        body = await request.json()
        services = ragql_state(request.scope).services
        result = await services.searching.search(
            principal.tenant_id, str(body["query"]), int(body.get("first", 10)), SearchOptions(mode="HYBRID")
        )
        hits = [
            {"id": str(h.document.id), "title": h.document.title, "score": h.score, "snippet": h.snippet}
            for h in result.hits
        ]
        return JSONResponse({"hits": hits, "tookMs": result.took_ms, "queryId": str(result.query_id)})
