"""Codes a recommendation request can be refused with."""

from __future__ import annotations

from enum import StrEnum


class RecommendationErrorCode(StrEnum):
    INVALID_DIVERSITY = "INVALID_DIVERSITY"
    CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"
