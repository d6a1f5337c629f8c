"""Uploads are read in worker processes, so a parse that overruns its budget is killed, not waited for.

The budget's clock in parsing.py is checked between steps (PDF pages, decode, markup), which
cannot stop one long step: pypdf extracting a single page of a million text operators ran on for
minutes, holding a core and the GIL the event loop needs. Here each parse runs in a worker
process and gets `ParseBudget.seconds` of wall time once a worker has it. A worker that overruns
is SIGKILLed and replaced; its file gets UNREADABLE_FILE ("took over N s"), the rest of the batch
goes on. A worker that dies (a crash in a C parser, the OOM killer) costs its file the same way.

Workers start on first use, from a forkserver that has already imported the parsers (a fork of
the serving process could inherit a lock held by another of its threads), and are reused:
starting one costs ~0.3 s once, a small parse afterwards ~1 ms more than in-process (README,
"Hardening"). At most `workers` parses run at once; more wait for a free worker, and waiting does
not count against a budget.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import ParseBudget, parse_upload
from domain.errors import DomainError, InvalidInput

log = logging.getLogger("ragql.documents")
_PRELOAD = ["domain.documents.parsing", "pypdf", "selectolax.lexbor"]


def _serve(conn: Connection) -> None:
    """A worker's loop: one (filename, data, max_bytes, path, budget) in, one reply out."""
    while True:
        try:
            filename, data, max_bytes, path, budget = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[Any, ...] = ("ok", parse_upload(filename, data, max_bytes=max_bytes, path=path, budget=budget))
        except DomainError as exc:
            reply = ("error", exc.code, exc.message, exc.field)
        except Exception as exc:  # MemoryError, RecursionError: still one file's problem
            reason = f"the file could not be read ({type(exc).__name__})"
            reply = ("error", DocumentErrorCode.UNREADABLE_FILE, reason, path)
        conn.send(reply)


class _Worker:
    def __init__(self, context: BaseContext) -> None:
        self.conn, child = multiprocessing.Pipe()
        process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child,), name="ragql-parse", daemon=True
        )
        self.process = process
        self.process.start()
        child.close()

    def kill(self) -> None:
        # The connection is left to the thread that may still be reading it (it gets EOF now and
        # drops it): closing it here could hand its descriptor number to a new pipe under that read.
        self.process.kill()
        self.process.join(timeout=5)


@dataclass
class _Reply:
    value: tuple[Any, ...] | None  # None: the worker died


def _exchange(conn: Connection, job: tuple[Any, ...]) -> _Reply:
    """Send a job and wait for its reply, in a thread: a large file never blocks the event loop."""
    try:
        conn.send(job)
        return _Reply(conn.recv())
    except (EOFError, OSError):
        return _Reply(None)


class ParsePool:
    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError("a parse pool needs at least one worker")
        self.workers = workers
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self._context: BaseContext | None = None
        self.started = 0  # worker processes started so far (each kill starts a new one later)
        self.killed = 0

    def _new_worker(self) -> _Worker:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._context = context
        self.started += 1
        return _Worker(self._context)

    async def parse(
        self, filename: str, data: bytes, *, max_bytes: int, path: str, budget: ParseBudget | None = None
    ) -> tuple[str, str]:
        """`parse_upload` in a worker process, killed when it overruns `budget.seconds`."""
        budget = budget or ParseBudget()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        async with self._slots:
            idle = self._idle_worker()
            worker = idle if idle is not None else await asyncio.to_thread(self._new_worker)
            try:
                job = (filename, data, max_bytes, path, budget)
                reply = await asyncio.wait_for(asyncio.to_thread(_exchange, worker.conn, job), budget.seconds)
            except TimeoutError:
                self._discard(worker)
                log.info("parse of %s killed after %g s", path, budget.seconds)
                raise InvalidInput(
                    DocumentErrorCode.UNREADABLE_FILE,
                    f"reading the file took over {budget.seconds:g} s (RAGQL_PARSE_TIMEOUT_S); split or simplify it",
                    field=path,
                ) from None
            except BaseException:
                self._discard(worker)  # cancelled mid-parse: its state is unknown
                raise
            if reply.value is None:
                self._discard(worker)
                log.warning("a parse worker died reading %s", path)
                crashed = f"{filename!r} could not be read (the reader crashed)"
                raise InvalidInput(DocumentErrorCode.UNREADABLE_FILE, crashed, field=path)
            self._idle.append(worker)
        if reply.value[0] == "ok":
            title, text = reply.value[1]
            return str(title), str(text)
        _, code, message, field = reply.value
        raise InvalidInput(code, message, field=field)

    def _idle_worker(self) -> _Worker | None:
        """A live idle worker; one that died while idle (the OOM killer, say) is dropped, so no
        innocent file pays for it."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            worker.conn.close()
        return None

    def _discard(self, worker: _Worker) -> None:
        self.killed += 1
        worker.kill()

    def close(self) -> None:
        for worker in self._idle:
            worker.kill()
            worker.conn.close()  # idle: nobody reads it
        self._idle.clear()
