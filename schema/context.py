"""The typed per-request context every resolver reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from strawberry.fastapi import BaseContext

from domain.auth.principal import Principal
from domain.runtime import ServerFacts, Services

__all__ = ["Charger", "Context", "Principal", "ThrottleStatus"]


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
        facts: ServerFacts | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.facts = facts or ServerFacts()
        self.principal = principal
        self.request_id = request_id
        self.charge = charge

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id
