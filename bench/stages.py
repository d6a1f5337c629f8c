"""`python -m bench stages`: where one search's server time goes, by the server's own account.

The bench's server (production settings, the eval's store) exports per-stage histograms
(`ragql_stage_duration_seconds`: embed, sql, fusion) and the operation's
(`ragql_graphql_operation_duration_seconds`). This reads them before and after a run of searches
sent one at a time, and prints the mean of each per search, with the rest of the operation (GraphQL,
snippets, the query log, middleware) and what the client measured on top (HTTP, and httpx itself).

Three steps, each on a server of its own: `uncached` (every cache off, distinct SciFact queries:
each is encoded), `embcached` (the result cache off, the same queries sent a second time, so
their vectors come from the cache) and `paragraphs` (every cache off, the bench's pasted
paragraphs of 1,000-4,000 characters at `first: 100`, as `search_long_query` sends them). Conc 1
only: the point is the split of one request's time, not throughput (that is `make bench`)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import LONG_QUERIES, Bench, Report, Server, _long_queries, _prepare_store, _queries, search_body
from bench.scenarios import NO_CACHES
from bench.stats import percentile

STAGES = ("embed", "sql", "fusion")
STAGE_METRIC = "ragql_stage_duration_seconds"
OPERATION_METRIC = "ragql_graphql_operation_duration_seconds"


def _scrape(http: httpx.Client, token: str) -> dict[str, float]:
    """Seconds so far per stage, and in query operations altogether ("operation")."""
    text = http.get("/metrics", headers={"authorization": f"Bearer {token}"}).raise_for_status().text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{STAGE_METRIC}_sum":
                out[sample.labels["stage"]] = out.get(sample.labels["stage"], 0.0) + sample.value
            elif sample.name == f"{OPERATION_METRIC}_sum" and sample.labels.get("type") == "query":
                out["operation"] = out.get("operation", 0.0) + sample.value
    return out


def _per_search_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: 1000 * (after[k] - before.get(k, 0.0)) / n for k in after}


def _step(
    bench: Bench, url: str, name: str, env: dict[str, str], pool: list[str], passes: int, first: int = 10
) -> None:
    token = secrets.token_urlsafe(40)
    auth = bench.auth()
    with Server(url, bench.secret, bench.workdir, {**env, "RAGQL_METRICS_TOKEN": token}) as server:
        with httpx.Client(base_url=server.base, headers=auth, timeout=60.0) as http:
            for q in pool[:10]:  # the model's first calls, the pools' connections
                http.post("/graphql", json=search_body(f"warm-up {q}", first)).raise_for_status()
            for _ in range(passes - 1):
                for q in pool:
                    http.post("/graphql", json=search_body(q, first)).raise_for_status()
            before = _scrape(http, token)
            client: list[float] = []
            for q in pool:
                t0 = time.perf_counter()
                body = http.post("/graphql", json=search_body(q, first)).raise_for_status().json()
                client.append((time.perf_counter() - t0) * 1000)
                if body.get("errors"):
                    raise RuntimeError(f"bench stages: a search failed: {body['errors'][:1]}")
            ms = _per_search_ms(before, _scrape(http, token), len(pool))
    parts = {stage: ms.get(stage, 0.0) for stage in STAGES}
    rest = ms.get("operation", 0.0) - sum(parts.values())
    client_p50 = percentile(client, 50)
    fields = " ".join(f"{stage}_ms={value:.2f}" for stage, value in parts.items())
    bench.report.emit(
        f"stages {name} n={len(pool)} operation_ms={ms.get('operation', 0.0):.2f} {fields} rest_ms={rest:.2f} "
        f"client_mean_ms={sum(client) / len(client):.2f} client_p50_ms={client_p50:.2f}",
        {"step": name, "n": len(pool), **ms, "rest": rest, "client_p50": client_p50},
    )


def run_stages(args: Any) -> None:
    bench = Bench(args, Report())
    url, corpus = asyncio.run(_prepare_store(bench))
    pool = _queries(bench.dataset)[: args.queries]
    _step(bench, url, "uncached", NO_CACHES, pool, passes=1)
    _step(bench, url, "embcached", {"RAGQL_SEARCH_CACHE_TTL_S": "0"}, pool, passes=2)
    paragraphs = _long_queries(corpus, min(args.queries, LONG_QUERIES))
    _step(bench, url, "paragraphs", NO_CACHES, paragraphs, passes=1, first=100)
    bench.report.emit(
        "info stages: means per search at conc 1 from the server's histograms; rest = GraphQL, snippets, "
        "query log, middleware; the client's figures add HTTP and httpx"
    )
