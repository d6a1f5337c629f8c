"""`ragql dev-token`: a JWT for trying the API locally."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from api.cli.core import err, settings
from domain.auth.apikeys import ROLES
from domain.errors import StartupError


# The same names as domain.auth.apikeys.ROLES (tests/test_cli.py checks they agree).
class Role(StrEnum):
    reader = "reader"
    editor = "editor"
    admin = "admin"


def dev_token(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="the tenant the token acts in")] = "default",
    role: Annotated[list[Role] | None, typer.Option(help="repeatable; default reader")] = None,
    subject: Annotated[str, typer.Option(help="the token's subject (sub)")] = "dev-user",
    ttl: Annotated[int, typer.Option(help="lifetime in seconds", min=1)] = 3600,
) -> None:
    """Print a JWT for local use, signed with RAGQL_JWT_SECRET."""
    from api.auth.tokens import JwtVerifier
    from api.bootstrap import jwt_config

    s = settings(ctx)
    if s.env == "production":
        raise StartupError(
            "dev-token refuses to mint tokens in production: issue them from your identity provider, "
            "or create an API key with the createApiKey mutation"
        )
    roles = sorted({r.value for r in role or []} or {"reader"}, key=ROLES.index)
    token = JwtVerifier(jwt_config(s)).issue(subject=subject, tenant=tenant, roles=roles, ttl_s=ttl)
    # The token alone on stdout, so `TOKEN=$(ragql dev-token)` works; the explanation on stderr.
    typer.echo(token)
    err().print(
        f"# tenant={tenant} roles={','.join(roles)} expires in {ttl}s; send it as 'Authorization: Bearer <token>'",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(dev_token)
