"""The Grafana dashboard and its contract with the metrics: the PromQL reader (tests/dashboard_metrics.py),
the panels the issue asks for, and that every family the dashboard queries is documented in
deploy/metrics.md. The scrape test against a running app joins these once the metrics exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard_metrics import DashboardQueryError, base_name, dashboard_queries, metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ragql.json"
METRICS_MD = ROOT / "deploy" / "metrics.md"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"


def _panel(title: str, *exprs: str) -> dict[str, Any]:
    return {"type": "timeseries", "title": title, "targets": [{"refId": "A", "expr": e} for e in exprs]}


def test_the_reader_finds_base_names_everywhere_a_dashboard_keeps_queries() -> None:
    dashboard = {
        "panels": [
            _panel(
                "latency",
                "histogram_quantile(0.95, sum by (le, route) (rate(app_request_seconds_bucket[$__rate_interval])))",
            ),
            # A collapsed row holds its panels inside itself.
            {
                "type": "row",
                "collapsed": True,
                "panels": [
                    _panel(
                        "ratio",
                        'sum(rate(app_requests_total{status="error", path=~"not_a_metric_.*"}[5m]))'
                        " / ignoring(status) group_left sum(rate(app_requests_total[${__interval}]))",
                    ),
                    _panel("mean", "rate(app_request_seconds_sum[5m]) / rate(app_request_seconds_count[5m])"),
                ],
            },
            _panel("by name label", '{__name__="app_queue_depth", queue!="bulk"}'),
            _panel("subquery", "max_over_time(app_open_sockets[1h:1m] offset 1d)"),
            {"type": "text", "title": "notes"},  # no targets
            _panel("empty", ""),
        ],
        "templating": {
            "list": [
                {"type": "query", "query": {"query": 'label_values(app_build_info{env=~"prod"}, version)'}},
                {"type": "query", "query": "query_result(topk(5, app_tenants_active))"},
                {"type": "custom", "query": "a,b,c"},
            ]
        },
    }
    assert metric_families(dashboard) == {
        "app_request_seconds",
        "app_requests_total",
        "app_queue_depth",
        "app_open_sockets",
        "app_build_info",
        "app_tenants_active",
    }


def test_the_reader_keeps_suffixes_that_are_not_histogram_parts() -> None:
    assert base_name("ragql_job_duration_seconds_bucket") == "ragql_job_duration_seconds"
    assert base_name("ragql_errors_total") == "ragql_errors_total"
    assert base_name("ragql_summary_of_things") == "ragql_summary_of_things"


def test_a_query_that_is_not_promql_is_an_error_not_an_empty_set() -> None:
    with pytest.raises(DashboardQueryError, match="sum\\(rate\\(ragql_errors_total"):
        metric_families({"panels": [_panel("typo", "sum(rate(ragql_errors_total[5m])")]})


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _documented_metrics() -> set[str]:
    """Metric names in the first column of deploy/metrics.md's tables."""
    return set(re.findall(r"^\| `(ragql_[a-z0-9_]+)` \|", METRICS_MD.read_text(), flags=re.MULTILINE))


REQUIRED_PANELS = {
    "Request rate": "ragql_graphql_operations_total",
    "p95 by operation": "ragql_graphql_operation_duration_seconds",
    "Errors by code": "ragql_errors_total",
    "Stage latencies": "ragql_stage_duration_seconds",
    "Cache hit rate": "ragql_cache_requests_total",
    "Queue depth": "ragql_job_queue_depth",
    "Open websockets": "ragql_websockets_open",
}


@pytest.mark.parametrize(("title", "family"), REQUIRED_PANELS.items())
def test_the_dashboard_has_the_panel(title: str, family: str) -> None:
    panels = [p for p in _dashboard()["panels"] if p.get("title") == title]
    assert len(panels) == 1, f"no single panel titled {title!r}"
    assert family in metric_families({"panels": panels})


def test_every_family_the_dashboard_queries_is_documented() -> None:
    queried = metric_families(DASHBOARD)
    documented = _documented_metrics()
    assert len(documented) == 16, sorted(documented)
    assert queried - documented == set(), "queried by the dashboard but not in deploy/metrics.md"
    # Every documented family is on the dashboard somewhere, so none is exported unseen.
    assert documented - queried == set()


def test_every_panel_uses_the_provisioned_datasource() -> None:
    provisioned = {ds["uid"] for ds in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    dashboard = _dashboard()
    queried = [p for p in dashboard["panels"] if p.get("targets")]
    assert queried and dashboard_queries(dashboard)
    for panel in queried:
        assert panel["datasource"]["uid"] in provisioned, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in provisioned, panel["title"]
