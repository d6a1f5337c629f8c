"""OpenTelemetry tracing, off by default. With OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, spans go to that collector over OTLP/HTTP, batched; the
standard OTEL_* variables (service name, headers, sampler) apply. compose.yaml's `jaeger` profile
runs a collector. Spans: one per GraphQL operation and one per retrieval stage (api/observability.py).
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace

log = logging.getLogger("ragql")


def configure_tracing(service_name: str = "ragql") -> bool:
    """Install the OTLP exporter if an endpoint is configured; True when tracing is on."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing: OTLP export on")
    return True
