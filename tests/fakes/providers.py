"""A local stand-in for the OpenAI Chat Completions and Cohere Rerank v2 HTTP APIs, for tests only.

The real SDKs are pointed at it through their base-URL settings, so tests exercise the SDKs' own
parsing, error mapping, timeouts and streaming rather than a mock of them::

    with FakeProviders() as fake:
        openai.AsyncOpenAI(api_key="x", base_url=fake.url + "/v1", max_retries=0, timeout=2.0)
        cohere.AsyncClientV2(api_key="x", base_url=fake.url, max_retries=0, timeout=2.0)

cohere 7.3.1: ``AsyncClientV2(api_key, *, base_url=None, timeout=None, max_retries=None, httpx_client=None, ...)``.
``base_url`` is used verbatim (``fix_base_url`` only rewrites cohere.com/cohere.ai hosts) and joined by string
concatenation with ``"v2/rerank"``, so it must NOT end in ``/v2``. ``timeout`` is seconds as a float for the default
httpx client (default 300; ignored if you pass your own ``httpx_client``); it can be overridden per call with
``request_options={"timeout_in_seconds": ...}``. ``max_retries`` defaults to 2 and honours ``Retry-After``.
Note the default ``base_url`` is read from ``CO_API_URL`` when the module is imported.

What the SDKs raise (max_retries=0; checked in tests/test_fake_providers.py):
    openai  Status(429) RateLimitError (.response.headers["retry-after"]), Status(500) InternalServerError,
            Delay past timeout APITimeoutError, Malformed json.JSONDecodeError (unwrapped, also mid-stream),
            CutStream APIConnectionError (cause: httpx2.RemoteProtocolError), also raised mid-iteration.
    cohere  Status(429) cohere.errors.TooManyRequestsError (.headers, .body), Delay past timeout a bare
            httpx.ReadTimeout (transport errors are not wrapped).

The server is hand-written HTTP/1.1 on ``asyncio.start_server`` rather than a web framework, because the tests need
control below the framework: cutting a chunked stream without its terminator, and noticing the moment a client hangs
up mid-stream. It runs on its own event loop in a daemon thread so it works from sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

DEFAULT_ANSWER = "This is a fake answer [1]."
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class Reply:
    """A normal answer, streamed or not as the request asks. On rerank it means "score with rerank_responder"."""

    text: str
    usage: tuple[int, int] = (10, 5)  # (prompt_tokens, completion_tokens)
    piece_delay: float = 0.0


@dataclass(frozen=True)
class Status:
    """An error status; ``body`` defaults to the provider's own error shape."""

    code: int
    body: dict[str, Any] | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Delay:
    """Sleep before sending anything (to trip client timeouts), then behave as ``then`` or the default."""

    seconds: float
    then: Behaviour | None = None


@dataclass(frozen=True)
class Malformed:
    """200 with a body that does not parse: truncated JSON, or an SSE ``data:`` line that is not JSON."""


@dataclass(frozen=True)
class CutStream:
    """Send ``after_pieces`` SSE chunks, then close the socket with no final chunk, [DONE] or chunked terminator.
    Non-streaming requests get their headers and then a closed socket."""

    after_pieces: int


@dataclass(frozen=True)
class SlowStream:
    """Stream one word every ``interval`` seconds, so a test can hang up mid-stream and see it noticed."""

    text: str
    interval: float


@dataclass(frozen=True)
class RawJSON:
    """Return exactly this body with 200, bypassing all shaping (garbage completions, out-of-range indexes...)."""

    body: dict[str, Any]


Behaviour = Reply | Status | Delay | Malformed | CutStream | SlowStream | RawJSON


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any
    received_at: float  # time.monotonic()


class _ClientGone(Exception):
    """The client closed the connection while we were still responding."""


def default_chat_responder(request: dict[str, Any]) -> str:
    return DEFAULT_ANSWER


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def default_rerank_responder(request: dict[str, Any]) -> list[float]:
    """Share of the query's words that appear in each document: deterministic and easy to reason about in tests."""
    query = _words(str(request.get("query", "")))
    scores = []
    for doc in request.get("documents", []):
        text = doc.get("text", "") if isinstance(doc, dict) else str(doc)
        scores.append(len(query & _words(text)) / len(query) if query else 0.0)
    return scores


class FakeProviders:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._port = 0
        self.closed_early = threading.Event()
        self.reset()

    # ---- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FakeProviders:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="fake-providers", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._port == 0:
            raise RuntimeError("fake providers server did not start")
        return self

    def _run_loop(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._serve_connection, "127.0.0.1", 0))
            self._port = self._server.sockets[0].getsockname()[1]
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        # On 3.11 Server.wait_closed() does not wait for open connections; idle keep-alive ones would linger.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- scripting and records (called from the test thread) ------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._scripts: dict[str, deque[Behaviour]] = {"chat": deque(), "rerank": deque()}
            self._requests: list[RecordedRequest] = []
            self._completed_streams = 0
            self.chat_responder: Callable[[dict[str, Any]], str] = default_chat_responder
            self.rerank_responder: Callable[[dict[str, Any]], list[float]] = default_rerank_responder
            self.closed_early.clear()

    def script_chat(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._scripts["chat"].append(behaviour)

    def script_rerank(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._scripts["rerank"].append(behaviour)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def completed_streams(self) -> int:
        with self._lock:
            return self._completed_streams

    def wait_closed_early(self, timeout: float) -> bool:
        return self.closed_early.wait(timeout)

    # ---- HTTP/1.1 plumbing ----------------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            # Keep-alive: httpx reuses connections, so serve requests until the client hangs up.
            while (request := await self._read_request(reader)) is not None:
                if not await self._dispatch(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, _ClientGone, ValueError):
            pass  # a client vanishing mid-exchange is routine here (timeouts, early closes)
        except asyncio.CancelledError:
            pass  # stop(): swallowed so asyncio's connection callback does not log the cancellation as an error
        finally:
            self._connections.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        request_line = await reader.readline()
        if not request_line:
            return None
        method, target, _version = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(method, target.split("?", 1)[0], headers, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
        return request

    async def _dispatch(self, request: RecordedRequest, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        """Answer one request; returns whether the connection may be reused."""
        route = {("POST", "/v1/chat/completions"): "chat", ("POST", "/v2/rerank"): "rerank"}.get(
            (request.method, request.path)
        )
        if route is None:
            await _send_json(w, 404, {"error": {"message": f"no route for {request.method} {request.path}"}})
        else:
            with self._lock:
                scripted = self._scripts[route].popleft() if self._scripts[route] else None
            body = request.json if isinstance(request.json, dict) else {}
            if not await self._perform(route, scripted, body, reader, w):
                return False
        return request.headers.get("connection", "").lower() != "close"

    async def _perform(
        self,
        route: str,
        behaviour: Behaviour | None,
        body: dict[str, Any],
        r: asyncio.StreamReader,
        w: asyncio.StreamWriter,
    ) -> bool:
        streaming = route == "chat" and body.get("stream") is True
        match behaviour:
            case Delay(seconds, then):
                await asyncio.sleep(seconds)
                return await self._perform(route, then, body, r, w)
            case Status(code, error_body, retry_after):
                extra = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
                await _send_json(w, code, error_body or _error_body(route, code), extra)
            case RawJSON(raw):
                await _send_json(w, 200, raw)
            case Malformed() if streaming:
                # One write, not _stream(): the client gives up at the bad line, and a well-formed end sent later
                # could land after the next test's reset() and show up there as a completed or cut stream.
                bad = b'data: {"id": "chatcmpl-broken", "choi\n\n'
                w.write(SSE_HEAD + _chunk(bad) + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                await w.drain()
            case Malformed():
                await _send(w, 200, "application/json", b'{"id": "broken", "object": "chat.completion", "choi')
            case CutStream(after_pieces) if streaming:
                await self._stream(w, r, _chat_chunks(body, Reply(self.chat_responder(body)))[:after_pieces], False)
                return False
            case CutStream():
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n")
                await w.drain()
                return False
            case _ if route == "rerank":  # Reply, SlowStream and the default all mean "rerank normally"
                await _send_json(w, 200, _rerank_body(body, self.rerank_responder(body)))
            case _:
                reply, delay = _as_reply(behaviour, body, self.chat_responder)
                if streaming:
                    await self._stream(w, r, _chat_chunks(body, reply), finish=True, delay=delay)
                else:
                    await _send_json(w, 200, _completion_body(body, reply))
        return True

    async def _stream(
        self, w: asyncio.StreamWriter, r: asyncio.StreamReader, events: list[bytes], finish: bool, delay: float = 0.0
    ) -> None:
        w.write(SSE_HEAD)
        # While we respond, the client sends nothing (httpx does not pipeline), so a read that completes means EOF:
        # the client hung up. Waiting on it between pieces notices a close immediately, not only on the next write.
        hung_up = asyncio.ensure_future(r.read(1))
        try:
            for i, event in enumerate(events):
                if i and delay:
                    done, _ = await asyncio.wait({hung_up}, timeout=delay)
                    if done:
                        raise _ClientGone
                w.write(_chunk(event))
                await w.drain()
        except (ConnectionError, _ClientGone):
            self.closed_early.set()
            raise _ClientGone from None
        finally:
            if hung_up.done() and not hung_up.cancelled():
                hung_up.exception()  # mark a reset-by-peer as retrieved so asyncio does not log it at GC
            hung_up.cancel()
        if finish:
            # Counted before the terminator goes out: the SDK drains up to it, so the moment the test's iteration
            # ends it may read this counter, and counting afterwards would race it.
            with self._lock:
                self._completed_streams += 1
            w.write(b"0\r\n\r\n")
            await w.drain()


def _as_reply(
    behaviour: Behaviour | None, body: dict[str, Any], responder: Callable[[dict[str, Any]], str]
) -> tuple[Reply, float]:
    """The chat reply to give and the pause between SSE pieces."""
    if isinstance(behaviour, Reply):
        return behaviour, behaviour.piece_delay
    if isinstance(behaviour, SlowStream):
        return Reply(behaviour.text), behaviour.interval
    text = responder(body)
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))
    return Reply(text, usage=(len(prompt.split()), len(text.split()))), 0.0


def _error_body(route: str, code: int) -> dict[str, Any]:
    message = f"fake provider error {code}"
    if route == "rerank":
        return {"message": message}
    kind = {429: ("requests", "rate_limit_exceeded"), 401: ("invalid_request_error", "invalid_api_key")}
    err_type, err_code = kind.get(code, ("server_error" if code >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": err_type, "param": None, "code": err_code}}


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_body(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.text}
    return {
        **_envelope(request, "chat.completion"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(reply),
    }


def _chat_chunks(request: dict[str, Any], reply: Reply) -> list[bytes]:
    """SSE events for a streamed completion: content pieces, the stop chunk, optional usage chunk, [DONE]."""
    envelope = _envelope(request, "chat.completion.chunk")
    pieces = re.findall(r"\s*\S+\s*", reply.text) or [""]  # word-level, whitespace kept so pieces rejoin exactly
    deltas: list[dict[str, Any]] = [{"content": piece} for piece in pieces]
    deltas[0]["role"] = "assistant"
    chunks = [
        {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]}
        for delta, reason in [*((d, None) for d in deltas), ({}, "stop")]
    ]
    if (request.get("stream_options") or {}).get("include_usage") is True:
        chunks.append({**envelope, "choices": [], "usage": _usage(reply)})
    return [b"data: %s\n\n" % json.dumps(chunk).encode() for chunk in chunks] + [b"data: [DONE]\n\n"]


def _envelope(request: dict[str, Any], kind: str) -> dict[str, Any]:
    model = request.get("model", "fake-model")
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()), "model": model}


def _rerank_body(request: dict[str, Any], scores: list[float]) -> dict[str, Any]:
    ranked = sorted(enumerate(scores), key=lambda pair: -pair[1])  # stable: ties keep document order
    top_n = request.get("top_n")
    if isinstance(top_n, int):
        ranked = ranked[:top_n]
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": i, "relevance_score": float(score)} for i, score in ranked],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _send_json(w: asyncio.StreamWriter, code: int, body: Any, extra: dict[str, str] | None = None) -> None:
    await _send(w, code, "application/json", json.dumps(body).encode(), extra)


async def _send(
    w: asyncio.StreamWriter, code: int, content_type: str, payload: bytes, extra: dict[str, str] | None = None
) -> None:
    reason = http.HTTPStatus(code).phrase if code in http.HTTPStatus._value2member_map_ else "Status"
    headers = {"content-type": content_type, "content-length": str(len(payload)), **(extra or {})}
    head = f"HTTP/1.1 {code} {reason}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    w.write(head.encode("latin-1") + b"\r\n" + payload)
    await w.drain()
