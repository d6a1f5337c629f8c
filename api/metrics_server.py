"""Who may read /metrics, and the separate metrics port.

Metrics tell a stranger a lot (operation names, error codes, traffic, pool sizes), so production
never serves them to anyone who asks:

- the API port's `/metrics` is open in development; in production it exists only when
  RAGQL_METRICS_TOKEN is set, and then answers 401 without `Authorization: Bearer <token>`;
- RAGQL_METRICS_PORT starts a second, plain HTTP server (bound to RAGQL_HOST) that serves only the
  metrics, for a port a network policy opens to Prometheus alone. `ragql serve` and `ragql worker`
  share it; when RAGQL_METRICS_TOKEN is set it is required there too. Its `/healthz` needs no
  token: the worker's probes use it (the worker has no other HTTP server).
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

CHALLENGE = 'Bearer realm="metrics"'
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def bearer_matches(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _guarded(app: WsgiApp, token: str | None) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if token is not None and not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", CHALLENGE)])
            return [b"metrics need Authorization: Bearer <RAGQL_METRICS_TOKEN>\n"]
        return app(environ, start_response)

    return guarded


class _Quiet(WSGIRequestHandler):
    """No access log on stderr: a scrape every 15 s is not news."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """The default registry over plain HTTP on (host, port), served by a daemon thread."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsHTTPServer", (ThreadingWSGIServer,), {"address_family": family})
        self._httpd: WSGIServer = make_server(
            host, port, _guarded(make_wsgi_app(), token), server_class, handler_class=_Quiet
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ragql-metrics", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
