"""The typed per-request context every resolver reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from strawberry.fastapi import BaseContext

from domain.auth.apikeys import ROLES as ROLE_ORDER
from domain.runtime import Services


@dataclass
class Principal:
    tenant_id: str
    subject: str
    roles: list[str] = field(default_factory=list)
    authenticated: bool = False
    # How the caller was identified: "jwt", "api_key" or "development" (no credentials, dev mode).
    method: str = "development"
    # The API key's id when method == "api_key", for per-key limits and audit.
    api_key_id: str | None = None
    # Unix time at which the credential stops being valid (JWT exp, key expiry); None = no expiry.
    expires_at: float | None = None

    def has_role(self, role: str) -> bool:
        """Roles are ordered: an admin is also an editor and a reader."""
        wanted = ROLE_ORDER.index(role)
        return any(r in ROLE_ORDER and ROLE_ORDER.index(r) >= wanted for r in self.roles)


@dataclass(frozen=True)
class ThrottleStatus:
    """What the rate limit looks like after a charge; reported in `extensions.cost`."""

    maximum_available: int
    currently_available: int
    restore_rate: float  # units per second
    backend: str  # "redis" or "local"


# Charges an operation's cost to the caller's rate limits. Raises domain.errors.RateLimited when
# over; otherwise returns the tightest bucket's status. Set by the api layer per request.
Charger = Callable[[int], Awaitable[ThrottleStatus]]


class Context(BaseContext):
    def __init__(
        self,
        *,
        services: Services,
        principal: Principal,
        request_id: str,
        charge: Charger | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.principal = principal
        self.request_id = request_id
        self.charge = charge

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id
