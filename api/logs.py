"""Log output for `ragql serve`: one JSON object per line (RAGQL_LOG_FORMAT=json, the default), or
plain text for a terminal. The request line (api/observability.py) carries its fields as `extra`;
they become top-level keys. What is logged never includes credentials or document text: messages
name ids and codes, and the Redis/DB URLs are scrubbed where they could appear."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# The request line's fields; anything else passed as `extra` is ignored on purpose.
FIELDS = ("request_id", "tenant", "operation", "operation_type", "duration_ms", "status", "error_codes")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


_HANDLER_NAME = "ragql"


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace our own handler (a second call) and plain console handlers (logging.basicConfig's,
    # which the CLI installs first), so each line is printed once. Handlers of other kinds, such as
    # pytest's capture or a log shipper's, keep receiving records.
    root.handlers[:] = [
        h for h in root.handlers if h.get_name() != _HANDLER_NAME and type(h) is not logging.StreamHandler
    ] + [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers propagate to the root handler, so they are JSON too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
