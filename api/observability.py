"""What ragql tells operators: Prometheus metrics (api/metrics.py), OpenTelemetry spans, and one
JSON log line per GraphQL operation.

* `Observed` is the domain's telemetry listener (domain/telemetry.py): a stage is one histogram
  observation and one span, a cache lookup one counter increment.
* `OperationObserver` is a Strawberry extension around each operation: one span, the operation
  counters and histogram, errors by code, and the request log line (request id, tenant, operation,
  type, duration, status, error codes; never variables, query text, tokens or documents).
  Spans exist per operation and per stage only, never per resolved field.

Operation names come from clients, so only well-formed names are used as labels and at most
`MAX_OPERATION_NAMES` distinct ones; the rest count as `other`. That keeps label sets small.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from strawberry.extensions import SchemaExtension

from api import metrics

log = logging.getLogger("ragql.request")
tracer = trace.get_tracer("ragql")
MAX_OPERATION_NAMES = 200
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_seen_names: set[str] = set()


class Observed:
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with tracer.start_as_current_span(f"stage {name}", attributes={"ragql.stage": name}):
            try:
                yield
            finally:
                metrics.STAGE_DURATION.labels(name).observe(time.perf_counter() - started)

    def observe(self, stage: str, seconds: float) -> None:
        metrics.STAGE_DURATION.labels(stage).observe(seconds)
        end = time.time_ns()
        span = tracer.start_span(
            f"stage {stage}", start_time=end - int(seconds * 1e9), attributes={"ragql.stage": stage}
        )
        span.end(end_time=end)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        metrics.CACHE_REQUESTS.labels(cache, "hit" if hit else "miss").inc()

    def llm_usage(self, provider: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        metrics.LLM_TOKENS.labels(provider, "prompt").inc(prompt_tokens)
        metrics.LLM_TOKENS.labels(provider, "completion").inc(completion_tokens)
        metrics.LLM_COST.labels(provider).inc(cost_usd)

    def rows_dropped(self, table: str, n: int) -> None:
        metrics.ROWS_DROPPED.labels(table).inc(n)


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "other"
    if name not in _seen_names:
        if len(_seen_names) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_names.add(name)
    return name


class OperationObserver(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        with tracer.start_as_current_span("graphql.operation") as span:
            yield
            ctx = self.execution_context
            result = ctx.result
            # The result carries every error, pre-execution ones included; without one, only those.
            errors = list(getattr(result, "errors", None) or []) if result is not None else []
            if not errors and ctx.pre_execution_errors:
                errors = list(ctx.pre_execution_errors)
            principal = getattr(ctx.context, "principal", None)
            operation_done(
                span,
                request_id=getattr(ctx.context, "request_id", "-"),
                tenant=getattr(principal, "tenant_id", None),
                name=operation_label(ctx.operation_name),
                kind=_operation_type(ctx),
                seconds=time.perf_counter() - started,
                errors=errors,
            )


def operation_done(
    span: Any, *, request_id: str, tenant: str | None, name: str, kind: str, seconds: float, errors: list[Any]
) -> None:
    """An operation's span attributes, counters, histogram and log line: OperationObserver's, and
    the replayed responses' (api/replay.py), so both count and log alike."""
    codes = sorted({str((e.extensions or {}).get("code", "INTERNAL")) for e in errors})
    status = "error" if errors else "ok"
    span.update_name(f"{kind} {name}")
    span.set_attribute("graphql.operation.name", name)
    span.set_attribute("graphql.operation.type", kind)
    if codes:
        span.set_attribute("ragql.error_codes", codes)
    metrics.OPERATIONS.labels(name, kind, status).inc()
    metrics.OPERATION_DURATION.labels(name, kind).observe(seconds)
    for error in errors:
        metrics.ERRORS.labels(str((error.extensions or {}).get("code", "INTERNAL"))).inc()
    request_log(request_id, tenant, name, kind, seconds, status, codes)


def _operation_type(ctx: Any) -> str:
    try:
        return str(ctx.operation_type.value)
    except Exception:  # the document did not parse: no operation to speak of
        return "unknown"


def request_log(
    request_id: str, tenant: str | None, operation: str, kind: str, seconds: float, status: str, codes: list[str]
) -> None:
    log.info(
        "%s %s %s in %.1f ms",
        kind,
        operation,
        status,
        seconds * 1000,
        extra={
            "request_id": request_id,
            "tenant": tenant,
            "operation": operation,
            "operation_type": kind,
            "duration_ms": round(seconds * 1000, 2),
            "status": status,
            "error_codes": codes,
        },
    )
