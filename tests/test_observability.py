"""What operators see from a running app: /metrics serves every family the Grafana dashboard
queries (read from the dashboard itself with the PromQL reader), spans come one per operation and
one per retrieval stage (never per field, SDK in-memory exporter), and the request log line is
JSON with the request's id, tenant, operation, duration, status and codes, and nothing secret."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from api.logs import JsonFormatter
from tests.conftest import graphql_ok
from tests.dashboard_metrics import metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ragql.json"
WORKER_ONLY = {"ragql_job_queue_depth", "ragql_job_duration_seconds"}

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)

SEARCH = "query Lookup($q: String!) { search(query: $q, first: 3) { hits { document { title } snippet } } }"


def _families(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.add(family.name + "_total")  # the parser strips _total from counters
    return names


async def test_metrics_serve_every_family_the_dashboard_queries(app_client: httpx.AsyncClient) -> None:
    await graphql_ok(app_client, SEARCH, {"q": f"lagoon {uuid.uuid4().hex[:6]}"})
    scraped = (await app_client.get("/metrics")).text
    queried = metric_families(DASHBOARD)
    assert queried, "the dashboard queries no metrics?"
    # Job metrics are the worker's (`ragql worker` serves them on RAGQL_METRICS_PORT); the api
    # process registers them too, so the same scrape shows the families exist.
    missing = sorted(name for name in queried if name not in _families(scraped))
    assert missing == [], f"dashboard queries families /metrics does not serve: {missing}"
    assert 'ragql_graphql_operations_total{operation="Lookup",status="ok",type="query"}' in scraped
    assert 'ragql_stage_duration_seconds_count{stage="sql"}' in scraped


async def test_one_span_per_operation_and_per_stage(app_client: httpx.AsyncClient) -> None:
    EXPORTER.clear()
    await graphql_ok(app_client, SEARCH, {"q": f"harbour film {uuid.uuid4().hex[:6]}"})
    # ragql's own spans (FastAPI adds its HTTP ones under other instrumentation scopes).
    spans = [
        s for s in EXPORTER.get_finished_spans() if s.instrumentation_scope and s.instrumentation_scope.name == "ragql"
    ]
    names = sorted(s.name for s in spans)
    assert "query Lookup" in names
    operation = next(s for s in spans if s.name == "query Lookup")
    stages = [s for s in spans if s.name.startswith("stage ")]
    assert {s.name for s in stages} >= {"stage embed", "stage sql", "stage fusion"}
    # Every stage hangs under the operation's span; nothing else (no per-field spans).
    assert all(s.parent is not None and s.parent.span_id == operation.context.span_id for s in stages)
    assert len(spans) == 1 + len(stages), names


async def test_request_log_line_is_json_without_secrets(
    app_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret_text = f"secretpassage{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.INFO, logger="ragql.request"):
        response = await app_client.post(
            "/graphql",
            json={"query": SEARCH, "variables": {"q": secret_text}},
            headers={"x-request-id": "req-observe-1"},
        )
    assert response.status_code == 200
    records = [r for r in caplog.records if r.name == "ragql.request"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-observe-1"
    assert line["operation"] == "Lookup" and line["operation_type"] == "query" and line["status"] == "ok"
    assert line["tenant"] == "default" and line["error_codes"] == [] and line["duration_ms"] > 0
    assert secret_text not in json.dumps(line)


async def test_errors_are_counted_by_code(app_client: httpx.AsyncClient) -> None:
    def count(text: str) -> float:
        for family in text_string_to_metric_families(text):
            if family.name == "ragql_errors":
                return sum(s.value for s in family.samples if s.labels.get("code") == "EMPTY_QUERY")
        return 0.0

    before = count((await app_client.get("/metrics")).text)
    await app_client.post("/graphql", json={"query": SEARCH, "variables": {"q": "   "}})
    assert count((await app_client.get("/metrics")).text) == before + 1
