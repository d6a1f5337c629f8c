"""The `ragql` command: what an operator runs on a server. Benches and evaluations are `python -m
bench` in a checkout.

Each command group is a module of api/cli/ with a `register(app)` function, listed in GROUPS below.
To add one (say api/cli/jobs.py with `worker` and `ingest`):

    def worker(ctx: typer.Context, concurrency: Annotated[int, typer.Option()] = 2) -> None:
        '''The docstring's first line is the help text.'''
        s = settings(ctx)          # api.cli.core: Settings, built once per run
        run(serve_jobs(s, ...))    # asyncio.run

    def register(app: typer.Typer) -> None:
        app.command()(worker)

then add the module to GROUPS. Errors a user can fix (StartupError, InvalidInput, a bad setting, an
unreachable database) are turned into one line and exit code 2 by api.cli.core.RagqlGroup."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import typer

from api.cli import access, database, evaluation, jobs, model, query, server
from api.cli.core import RagqlGroup

app = typer.Typer(
    name="ragql",
    cls=RagqlGroup,
    help="GraphQL retrieval service: hybrid search, recommendations and streamed answers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would print settings, secrets among them
)

GROUPS = (server, database, jobs, query, access, model, evaluation)
for group in GROUPS:
    group.register(app)


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (what Docker, systemd and Kubernetes send) must leave through the interpreter's
    normal exit, as SIGINT does, so that atexit hooks run: pgserver stops the embedded PostgreSQL
    in one. Python's default for SIGTERM kills the process on the spot and skips them all. uvicorn
    takes the signal over while it serves, shuts down gracefully, puts this handler back and
    raises the signal again, so this is what finally ends `ragql serve`."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        # A second SIGTERM must not interrupt the cleanup it started (pg_ctl stop).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The shutdown was asked for and has completed: that is a success, not a crash.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Their INFO lines are every pg_ctl/initdb call with its full output, and each Alembic plugin:
    # noise in front of what a command prints. Warnings and errors still show.
    for chatty in ("pgserver", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    _exit_cleanly_on_sigterm()
    app(args=argv, prog_name="ragql")


if __name__ == "__main__":
    main()
