"""Real `ragql worker` processes for the job tests: started with `python -m api.cli worker` against
the test database, with short heartbeat and poll settings so a killed worker's job moves quickly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Short, so the tests stay fast; production defaults are 10 s and 5 s.
HEARTBEAT_TIMEOUT_S = 2.0
POLL_S = 0.5
BATCH = 4


def word(i: int) -> str:
    """A long word of letters only, different for every i: the BM25 health probe searches a stored
    chunk by its longest words, and near-identical test documents would otherwise all tie."""
    letters = "".join(chr(97 + (i // 26**k) % 26) for k in range(4))
    return f"zyx{letters}quarantine"


def worker_env(pg_url: str, tmp_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQL_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAGQL_DATABASE_URL": pg_url,
            "RAGQL_DATA_DIR": str(tmp_root),
            "RAGQL_JOB_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
            "RAGQL_JOB_POLL_S": str(POLL_S),
            "RAGQL_JOB_BATCH_SIZE": str(BATCH),
            "RAGQL_LOAD_DEMO": "false",
            # Several workers on one machine: each takes a free port for /metrics.
            "RAGQL_METRICS_PORT": "0",
        }
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "worker ready" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited during start-up:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not start in time:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)


def start_worker(pg_url: str, tmp_root: Path, name: str, **extra: str) -> WorkerProcess:
    log = tmp_root / f"worker-{name}-{time.monotonic_ns()}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"],
        cwd=REPO,
        env=worker_env(pg_url, tmp_root, **extra),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return WorkerProcess(process, log)


@contextmanager
def workers(pg_url: str, tmp_root: Path, *names: str) -> Iterator[list[WorkerProcess]]:
    started = [start_worker(pg_url, tmp_root, n) for n in names]
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.kill()
            keep = os.environ.get("RAGQL_TEST_KEEP_WORKER_LOGS")
            if keep:  # the temp dir goes with the session; keep the logs for a post-mortem
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / w.log.name).write_text(w.output())
