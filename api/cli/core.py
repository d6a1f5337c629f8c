"""What every `ragql` command shares: the settings, the consoles, and errors that name the fix.

A command group is one module in api/cli/ with a `register(app)` function (see api/cli/__init__.py).
A command reads its configuration with `settings(ctx)`; the errors below become one red line on
stderr and exit code 2 instead of a traceback, whichever command raised them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import DBAPIError
from typer.core import TyperGroup

from api.settings import Settings
from domain.errors import DomainError, InvalidInput, StartupError
from domain.providers.embedding import Embedder

T = TypeVar("T")


@dataclass
class CliState:
    """Passed as click's `obj`. Tests hand in the session's embedder so a command does not load the
    model again; a real run leaves everything unset and builds it from the settings."""

    settings: Settings | None = None
    embedder: Embedder | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def settings(ctx: typer.Context) -> Settings:
    s = state(ctx)
    if s.settings is None:
        s.settings = Settings(**s.overrides)
    return s.settings


def out() -> Console:
    # Built per call: rich would otherwise keep the sys.stdout of import time (typer's test runner swaps it).
    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    # Not wrapped at the terminal width: an error line stays whole in logs and in `grep`.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def fail(message: str, *, code: int = 2) -> NoReturn:
    err().print(f"[bold red]ragql:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _database_problem(exc: BaseException, configured: bool) -> str | None:
    """A database that cannot be reached, named with what to do about it."""
    where = "RAGQL_DATABASE_URL" if configured else "the embedded database"
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    name = type(cause).__name__
    if isinstance(cause, ConnectionRefusedError | socket.gaierror | TimeoutError) or name in {
        "InvalidPasswordError",
        "InvalidCatalogNameError",
        "InvalidAuthorizationSpecificationError",
        "CannotConnectNowError",
    }:
        return (
            f"cannot use {where}: {name}: {cause}. Check that the server is running and that "
            "RAGQL_DATABASE_URL (postgresql://user:password@host:port/database) is right, "
            "or unset it to use the embedded PostgreSQL"
        )
    return None


class RagqlGroup(TyperGroup):
    """Turns the errors a user can fix into a message and exit code 2 (no traceback)."""

    # `ctx` is typer's (vendored) click Context; Any keeps the override compatible with the base.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except StartupError as exc:
            fail(exc.message)
        except InvalidInput as exc:
            where = f" ({exc.field})" if exc.field else ""
            fail(f"{exc.code}{where}: {exc.message}")
        except DomainError as exc:
            fail(f"{exc.code}: {exc.message}")
        except ValidationError as exc:
            lines = "; ".join(
                f"RAGQL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" if e["loc"] else e["msg"]
                for e in exc.errors()
            )
            fail(f"invalid configuration: {lines or exc}")
        except (OSError, DBAPIError) as exc:
            obj = ctx.find_root().obj
            configured = isinstance(obj, CliState) and obj.settings is not None and bool(obj.settings.database_url)
            message = _database_problem(exc, configured)
            if message is None:
                raise
            fail(message)
