"""Codes an answer can fail with, before it starts (validation) or while it streams (provider)."""

from __future__ import annotations

from enum import StrEnum


class AnswerErrorCode(StrEnum):
    EMPTY_QUESTION = "EMPTY_QUESTION"
    QUESTION_TOO_LONG = "QUESTION_TOO_LONG"
    INVALID_SOURCES = "INVALID_SOURCES"
    EMPTY_SELECTED_TEXT = "EMPTY_SELECTED_TEXT"
    SELECTED_TEXT_TOO_LONG = "SELECTED_TEXT_TOO_LONG"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    PROVIDER_ERROR = "PROVIDER_ERROR"
