"""Who is calling: resolved by the api layer before GraphQL runs, read by every layer below."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.auth.apikeys import ROLES


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
        wanted = ROLES.index(role)
        return any(r in ROLES and ROLES.index(r) >= wanted for r in self.roles)
