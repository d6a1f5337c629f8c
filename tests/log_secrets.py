"""Secrets never reach the logs: every log record of the whole test session is kept (INFO and up,
with tracebacks), and at the end of the session each test secret is searched for in them. A hit
fails the run and prints the offending lines.

Tests register what they create (JWT secrets, tokens, API keys, provider keys) with `remember`."""

from __future__ import annotations

import logging

import pytest

SECRETS: set[str] = set()


def remember(secret: str) -> str:
    if len(secret) >= 8:  # shorter strings would match innocent text
        SECRETS.add(secret)
    return secret


class _KeepEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not break the suite; it can't leak what it can't format
            self.lines.append(f"{record.name} unformattable record")


KEPT = _KeepEverything()


def leaks() -> list[tuple[str, str]]:
    """(secret's first 6 characters, log line) for every secret found in the kept log lines."""
    return [(s[:6] + "…", line) for line in KEPT.lines for s in SECRETS if s in line]


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(KEPT)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    found = leaks()
    if found:
        print(f"\nSECRETS FOUND IN LOGS ({len(found)}):")
        for prefix, line in found[:20]:
            print(f"  {prefix}: {line[:300]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
