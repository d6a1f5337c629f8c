"""Who may call what. Roles are ordered (admin ⊇ editor ⊇ reader); each root field names the
least role it needs through one of these permission classes, so no resolver checks roles itself."""

from __future__ import annotations

from typing import Any, ClassVar

import strawberry
from strawberry.permission import BasePermission

from schema.context import Context


class _NeedsRole(BasePermission):
    role: ClassVar[str]
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 (Strawberry reads it off the class)

    def has_permission(self, source: Any, info: strawberry.Info[Context], **kwargs: Any) -> bool:
        return info.context.principal.has_role(self.role)


class IsReader(_NeedsRole):
    role = "reader"
    message = "This needs the reader role (or editor, or admin)."


class IsEditor(_NeedsRole):
    role = "editor"
    message = "This needs the editor role (or admin): ingesting and deleting documents change the tenant's data."


class IsAdmin(_NeedsRole):
    role = "admin"
    message = "This needs the admin role: API keys and analytics are for the tenant's admins."
