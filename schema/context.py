"""The typed per-request context every resolver reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from strawberry.fastapi import BaseContext

from domain.runtime import Services


@dataclass
class Principal:
    tenant_id: str
    subject: str
    roles: list[str] = field(default_factory=list)
    authenticated: bool = False


class Context(BaseContext):
    def __init__(self, *, services: Services, principal: Principal, request_id: str) -> None:
        super().__init__()
        self.services = services
        self.principal = principal
        self.request_id = request_id

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id
