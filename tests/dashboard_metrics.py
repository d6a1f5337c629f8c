"""Which metric families a Grafana dashboard queries, read with a real PromQL parser.

`metric_families(dashboard)` returns the base names (`_bucket`, `_count`, `_sum` stripped) of every
metric selected by the dashboard's PromQL: panel targets, panels nested in collapsed rows, and
query variables. A query that is not valid PromQL raises `DashboardQueryError`, so a typo in the
dashboard fails the tests instead of drawing an empty panel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import promql_parser

HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Grafana's interval macros are not PromQL; any duration stands in for them when parsing.
_GRAFANA_INTERVAL = re.compile(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?")
_LABEL_VALUES = re.compile(r"^\s*(?:label_values|query_result)\((?P<inner>.*)\)\s*$", re.DOTALL)


class DashboardQueryError(ValueError):
    """A dashboard query that PromQL cannot parse."""


def base_name(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def _panels(panels: list[Any]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        # A collapsed row keeps its panels inside itself.
        yield from _panels(panel.get("panels") or [])


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression in the dashboard, in document order."""
    queries = [
        target["expr"]
        for panel in _panels(dashboard.get("panels") or [])
        for target in panel.get("targets") or []
        if target.get("expr")
    ]
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, Mapping) else query
        if not text:
            continue
        # label_values(metric{...}, label) and query_result(expr) wrap a selector or an expression.
        match = _LABEL_VALUES.match(text)
        if match:
            inner = match.group("inner")
            text = inner.rsplit(",", 1)[0] if text.lstrip().startswith("label_values") and "," in inner else inner
        queries.append(text)
    return queries


def selected_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (as written, suffixes kept)."""
    try:
        tree = promql_parser.parse(_GRAFANA_INTERVAL.sub("5m", expr))
    except ValueError as exc:
        raise DashboardQueryError(f"not valid PromQL: {expr!r}: {exc}") from exc
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:  # {__name__="metric"} selects by the name label
                for matcher in node.matchers.matchers:
                    if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                        names.add(matcher.value)
        return True

    promql_parser.walk(tree, visit)
    return names


def metric_families(dashboard: Mapping[str, Any] | Path) -> set[str]:
    """Base names of every metric family the dashboard's queries select."""
    if isinstance(dashboard, Path):
        dashboard = json.loads(dashboard.read_text())
    assert not isinstance(dashboard, Path)
    return {base_name(name) for expr in dashboard_queries(dashboard) for name in selected_metrics(expr)}
