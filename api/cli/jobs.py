"""`ragql worker`, `ragql ingest` and `ragql import-feedback`: ingestion jobs from the command line.
The work is in api.worker and api.ingest_command; these only parse options and report."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from api.cli.core import err, run, settings


def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(help="jobs at once (default RAGQL_WORKER_CONCURRENCY)")] = 0,
) -> None:
    """Run ingestion jobs from the queue; start any number of replicas."""
    from api.bootstrap import open_worker_deps, worker_config
    from api.metrics_server import MetricsServer
    from api.settings import WORKER_METRICS_PORT
    from api.worker import Worker, install_signal_handlers

    s = settings(ctx)
    config = worker_config(s)
    if concurrency:
        config = replace(config, concurrency=concurrency)
    # /metrics for Prometheus and the probes (k8s/base/worker-deployment.yaml); the worker has no API.
    port = s.metrics_port if s.metrics_port is not None else WORKER_METRICS_PORT
    token = s.metrics_token.get_secret_value() if s.metrics_token else None
    server = MetricsServer(s.host, port, token)
    logging.getLogger("ragql.worker").info("metrics on http://%s:%d/metrics", s.host, server.port)

    async def go() -> int:
        deps, close = await open_worker_deps(s)
        job_worker = Worker(deps, config)
        # In the loop, SIGTERM/SIGINT stop the worker gracefully (finish the batch, hand back the job).
        install_signal_handlers(job_worker)
        try:
            await job_worker.run()
        finally:
            await close()
        return job_worker.jobs_run

    jobs = run(go())
    print(f"worker stopped after {jobs} jobs", file=sys.stderr)


def _exit_for(interrupted: bool, all_failed: bool) -> None:
    if interrupted:
        raise typer.Exit(130)  # as a shell reports Ctrl-C
    if all_failed:
        raise typer.Exit(1)


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="a folder (.txt .md .html .pdf) or a .jsonl file (DocumentInput/BEIR)")],
    tenant: Annotated[str, typer.Option(help="the tenant to ingest into (created if missing)")],
    wait_sentences: Annotated[
        bool, typer.Option(help="wait for the jobs' sentence vectors (else a worker stores them later)")
    ] = True,
) -> None:
    """Ingest a folder or a JSONL file as jobs, with a progress bar; run again to continue."""
    from api.ingest_command import ingest_path

    totals = run(ingest_path(settings(ctx), path, tenant, err(), sentences=wait_sentences))
    # Plain print: one unwrapped line, whatever the terminal width (scripts read it).
    print(totals.last_line())
    _exit_for(totals.interrupted, totals.items > 0 and totals.failed == totals.items)


def import_feedback(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="JSONL: userId, kind, documentId|documentExternalId, rating, idempotencyKey, occurredAt"),
    ],
    tenant: Annotated[str, typer.Option(help="the tenant the events belong to")],
) -> None:
    """Import historical feedback events from a JSONL file as jobs, with a progress bar."""
    from api.ingest_command import import_feedback_file, imported_line

    totals = run(import_feedback_file(settings(ctx), file, tenant, err()))
    print(imported_line(totals))
    _exit_for(totals.interrupted, totals.items > 0 and totals.failed == totals.items)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(ingest)
    app.command("import-feedback")(import_feedback)
