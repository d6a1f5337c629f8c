"""Codes an analytics request can be refused with."""

from __future__ import annotations

from enum import StrEnum


class AnalyticsErrorCode(StrEnum):
    INVALID_RANGE = "INVALID_RANGE"
