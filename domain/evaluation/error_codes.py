"""Codes `ragql eval` fails with on a dataset folder. They are printed by the CLI and never reach
a GraphQL client, so the schema's ErrorCode does not carry them (tests/test_error_codes.py)."""

from __future__ import annotations

from enum import StrEnum


class EvaluationErrorCode(StrEnum):
    DATASET_NOT_FOUND = "DATASET_NOT_FOUND"
    DATASET_FILE_MISSING = "DATASET_FILE_MISSING"
    DATASET_INVALID_LINE = "DATASET_INVALID_LINE"
    DATASET_EMPTY = "DATASET_EMPTY"
    UNKNOWN_MODE = "UNKNOWN_MODE"
