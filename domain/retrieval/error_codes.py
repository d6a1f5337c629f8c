"""Codes a search (and its metadata filter) can fail with."""

from __future__ import annotations

from enum import StrEnum


class SearchErrorCode(StrEnum):
    EMPTY_QUERY = "EMPTY_QUERY"
    QUERY_TOO_LONG = "QUERY_TOO_LONG"
    INVALID_ALPHA = "INVALID_ALPHA"
    INVALID_CANDIDATES = "INVALID_CANDIDATES"
    UNKNOWN_FILTER_OPERATOR = "UNKNOWN_FILTER_OPERATOR"
    INVALID_FILTER_VALUE = "INVALID_FILTER_VALUE"
    INVALID_FILTER_FIELD = "INVALID_FILTER_FIELD"
    FILTER_TOO_COMPLEX = "FILTER_TOO_COMPLEX"
