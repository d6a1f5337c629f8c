"""Codes an API-key mutation can be refused with."""

from __future__ import annotations

from enum import StrEnum


class ApiKeyErrorCode(StrEnum):
    INVALID_NAME = "INVALID_NAME"
    INVALID_ROLES = "INVALID_ROLES"
    INVALID_EXPIRY = "INVALID_EXPIRY"
