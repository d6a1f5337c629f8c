"""Codes a job request or a job can fail with."""

from __future__ import annotations

from enum import StrEnum


class JobErrorCode(StrEnum):
    JOB_TOO_LARGE = "JOB_TOO_LARGE"
    EMPTY_JOB = "EMPTY_JOB"
    JOB_FINISHED = "JOB_FINISHED"
    # Lines of a file given to `ragql ingest` / `ragql import-feedback`.
    INVALID_JSON = "INVALID_JSON"
    INVALID_EVENT = "INVALID_EVENT"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    # The job stopped for a reason of its own (not its documents'): the message says which.
    JOB_ABORTED = "JOB_ABORTED"
