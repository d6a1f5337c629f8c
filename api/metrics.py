"""ragql's own Prometheus metrics: the names, types and labels of deploy/metrics.md (the contract
the Grafana dashboard reads). Labels are small fixed sets: operation names, codes, stages, caches.

All live in the default registry, which prometheus_fastapi_instrumentator serves at /metrics next
to its HTTP metrics. The job metrics (`ragql_job_queue_depth`, `ragql_job_duration_seconds`) are
the worker's, defined in api/worker.py and served by `ragql worker` on RAGQL_METRICS_PORT.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

# Seconds: from a cache hit (~1 ms) to a long streamed answer (~1 min).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OPERATIONS = Counter("ragql_graphql_operations", "GraphQL operations executed", ["operation", "type", "status"])
OPERATION_DURATION = Histogram(
    "ragql_graphql_operation_duration_seconds",
    "Wall time of one GraphQL operation",
    ["operation", "type"],
    buckets=_BUCKETS,
)
ERRORS = Counter("ragql_errors", "Errors returned to clients, by extensions.code", ["code"])
STAGE_DURATION = Histogram(
    "ragql_stage_duration_seconds", "Time in one retrieval stage of one operation", ["stage"], buckets=_BUCKETS
)
CACHE_REQUESTS = Counter("ragql_cache_requests", "Cache lookups", ["cache", "result"])
LLM_TOKENS = Counter("ragql_llm_tokens", "Tokens sent to and received from model providers", ["provider", "kind"])
LLM_COST = Counter("ragql_llm_cost_usd", "Estimated cost of model tokens in US dollars", ["provider"])
ROWS_DROPPED = Counter(
    "ragql_rows_dropped", "Rows written behind a response (the query log) that could not be stored", ["table"]
)
WEBSOCKETS_OPEN = Gauge("ragql_websockets_open", "Websocket connections open on this replica")
DB_POOL = Gauge("ragql_db_pool_connections", "Database pool connections by state", ["state"])
REDIS_UP = Gauge("ragql_redis_up", "1 while Redis answers (or none is configured), 0 while it is considered down")
REDIS_UP.set(1)
REDIS_ERRORS = Counter("ragql_redis_errors", "Redis calls that failed and were skipped", ["component"])
BM25_REPAIRS = Counter("ragql_bm25_repairs", "Keyword index rebuilds after the health probe found it broken")
BM25_HEALTHY = Gauge("ragql_bm25_index_healthy", "1 when the last keyword-index probe found it healthy")

ROWS_DROPPED.labels("query_log")  # served from the start, at 0: an alert can tell 0 from no data
for _stage in ("embed", "sql", "fusion", "rerank", "generate"):
    STAGE_DURATION.labels(_stage)
for _cache in ("search", "embedding", "answer", "apikey"):
    for _result in ("hit", "miss"):
        CACHE_REQUESTS.labels(_cache, _result)
for _state in ("in_use", "idle", "overflow"):
    DB_POOL.labels(_state)


def watch_pool(read: Callable[[], tuple[int, int, int]]) -> None:
    """Database pool gauges, read at scrape time from (in_use, idle, overflow)."""
    DB_POOL.labels("in_use").set_function(lambda: read()[0])
    DB_POOL.labels("idle").set_function(lambda: read()[1])
    DB_POOL.labels("overflow").set_function(lambda: read()[2])
