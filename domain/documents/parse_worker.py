"""One upload-parsing worker process (`python -m domain.documents.parse_worker`), run by
parse_pool.py: pickled (filename, data, max_bytes, path, budget) frames in on stdin, one reply
frame per job out on the original stdout. Anything a parser prints goes to stderr instead, so it
can't corrupt the frames."""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection
from typing import Any

from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import parse_upload
from domain.errors import DomainError


def serve(jobs: Connection, replies: Connection) -> None:
    while True:
        try:
            filename, data, max_bytes, path, budget = jobs.recv()
        except EOFError:
            return
        try:
            reply: tuple[Any, ...] = ("ok", parse_upload(filename, data, max_bytes=max_bytes, path=path, budget=budget))
        except DomainError as exc:
            reply = ("error", exc.code, exc.message, exc.field)
        except Exception as exc:  # MemoryError, RecursionError: still one file's problem
            reply = (
                "error",
                DocumentErrorCode.UNREADABLE_FILE,
                f"the file could not be read ({type(exc).__name__})",
                path,
            )
        replies.send(reply)


def main() -> None:
    replies = Connection(os.dup(sys.stdout.fileno()), readable=False)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(Connection(os.dup(sys.stdin.fileno()), writable=False), replies)


if __name__ == "__main__":
    main()
