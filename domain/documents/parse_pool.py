"""Uploads are read in worker processes, so a parse that overruns its budget is killed, not waited for.

The budget's clock in parsing.py is checked between steps (PDF pages, decode, markup), which
cannot stop one long step: pypdf extracting a single page of a million text operators ran on for
minutes, holding a core and the GIL the event loop needs. Here each parse runs in a worker
process and gets `ParseBudget.seconds` of wall time once a worker has it. A worker that overruns
is SIGKILLed and replaced; its file gets UNREADABLE_FILE ("took over N s"), the rest of the batch
goes on. A worker that dies (a crash in a C parser, the OOM killer) costs its file the same way.

Workers are fresh interpreters (`python -m domain.documents.parse_worker`), started on first use
and reused. Not multiprocessing: a fork of the serving process could inherit a lock held by
another of its threads, and spawn/forkserver children re-run the parent's `__main__`, which for
`python -m api.cli serve` would start another server. Start-up and per-file overhead: README,
"Hardening". At most `workers` parses run at once; more wait for a free worker, and waiting does
not count against a budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import ParseBudget
from domain.errors import InvalidInput

log = logging.getLogger("ragql.documents")
# The directory that holds the `domain` package, for a worker started from a source checkout.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_IMPORT_ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "domain.documents.parse_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.jobs = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        # The connections are left to the thread that may still be using them (it gets EOF now and
        # drops them): closing them here could hand a descriptor number to a new pipe under its read.
        self.process.kill()
        self.process.wait(timeout=5)

    def close(self) -> None:
        self.kill()
        self.jobs.close()
        self.replies.close()


@dataclass
class _Reply:
    value: tuple[Any, ...] | None  # None: the worker died


def _exchange(worker: _Worker, job: tuple[Any, ...]) -> _Reply:
    """Send a job and wait for its reply, in a thread: a large file never blocks the event loop."""
    try:
        worker.jobs.send(job)
        return _Reply(worker.replies.recv())
    except (EOFError, OSError):
        return _Reply(None)


class ParsePool:
    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError("a parse pool needs at least one worker")
        self.workers = workers
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self.started = 0  # worker processes started so far (each kill starts a new one later)
        self.killed = 0

    def _new_worker(self) -> _Worker:
        self.started += 1
        return _Worker()

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
                reply = await asyncio.wait_for(asyncio.to_thread(_exchange, worker, job), budget.seconds)
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
            if worker.alive():
                return worker
            worker.close()
        return None

    def _discard(self, worker: _Worker) -> None:
        self.killed += 1
        worker.kill()

    def close(self) -> None:
        for worker in self._idle:
            worker.close()  # idle: nobody reads its pipes
        self._idle.clear()
