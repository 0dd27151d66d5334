"""The agent's local HTTP API: `POST /predict` (the central predict API's request, answer,
warnings and errors, from the same serving core) and `GET /healthz`.

HTTP/1.1 on the standard library's threading TCP server, one thread per connection, with a
small parser of its own: the request line, the headers (at most MAX_HEADERS lines of at most
MAX_LINE bytes) and a body of `Content-Length` bytes (chunked bodies are refused with a 400).
It costs a fraction of `http.server`'s per-request work (no `email` header parsing, one
`sendall` per answer), and TCP_NODELAY is set, so no answer waits on Nagle and delayed ACKs.
Keep-alive connections are served (HTTP/1.0 ones when they ask); `Expect: 100-continue` is
answered; an idle connection is closed after TIMEOUT seconds. On stop, requests in flight
finish first and their connections are closed after the answer.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import json
import logging
import socketserver
import threading
import time
from typing import Any

from edumlops.edge.agent import Agent
from edumlops.ml.serving_core import MAX_ROWS, parse_rows, unseen_categories

log = logging.getLogger("edumlops.edge.http")

# MAX_ROWS rows of a few dozen features each fit well within this
MAX_BODY = max(2 * 1024 * 1024, MAX_ROWS * 4096)
MAX_LINE = 65536  # bytes of the request line and of each header line
MAX_HEADERS = 100
TIMEOUT = 60  # an idle keep-alive connection is closed after this many seconds
SERVER = "edumlops-edge"
CLOSE = "Connection: close\r\n"
REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class BadRequest(Exception):
    """A request this server cannot read; answered with `status` and the connection closed."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Request:
    __slots__ = ("method", "path", "version", "headers", "keep_alive")

    def __init__(self, method: str, path: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers  # names in lower case
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = connection == "keep-alive"
        else:
            self.keep_alive = connection != "close"

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]


class EdgeServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # idle keep-alive connections do not hold the process
    allow_reuse_address = True
    agent: Agent

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        super().__init__(address, Handler)
        self.agent = agent
        self.closing = False
        self._busy = 0
        self._idle = threading.Condition()

    def begin(self) -> None:
        with self._idle:
            self._busy += 1

    def end(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def drain(self, timeout: float = 30.0) -> bool:
        """Stop taking requests on open connections and wait for those in flight."""
        self.closing = True
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


class Handler(socketserver.StreamRequestHandler):
    server: EdgeServer
    disable_nagle_algorithm = True
    timeout = TIMEOUT

    def handle(self) -> None:
        while not self.server.closing:
            try:
                request = self._read_request()
            except BadRequest as exc:
                self._send(exc.status, {"detail": exc.detail}, close=True)
                return
            except OSError:
                return  # idle past the timeout, or the client went away
            if request is None:
                return
            self.server.begin()
            try:
                keep = self._answer(request)
            except OSError:
                return  # the client went away within its body
            finally:
                self.server.end()
            if not keep:
                return

    # --- reading -------------------------------------------------------------------------------
    def _read_request(self) -> Request | None:
        """The next request's line and headers; None when the client closed the connection."""
        line = self.rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # an empty line before a request is ignored
            line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise BadRequest(414, f"The request line is longer than {MAX_LINE} bytes.")
        words = line.decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            raise BadRequest(400, f"Not an HTTP/1.x request line: {line[:100]!r}.")
        method, path, version = words
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return Request(method, path, version, headers)
            if len(line) > MAX_LINE:
                raise BadRequest(431, f"A header line is longer than {MAX_LINE} bytes.")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest(400, f"Not a header line: {line[:100]!r}.")
            headers[name.lower()] = value.strip()
        raise BadRequest(431, f"More than {MAX_HEADERS} header lines.")

    def _body_length(self, request: Request) -> int:
        """The length of the request's body; BadRequest when it cannot be read safely."""
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            raise BadRequest(400, "Send the JSON body with a Content-Length header.")
        raw = request.headers.get("content-length")
        if raw is None:
            return -1
        if not raw.isdigit():
            raise BadRequest(400, f"Content-Length {raw!r} is not a number.")
        return int(raw)

    def _read_body(self, request: Request, length: int) -> bytes:
        if length <= 0:
            return b""
        if request.version != "HTTP/1.0" and (
            request.headers.get("expect", "").lower() == "100-continue"
        ):
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return self.rfile.read(length)

    # --- answering -----------------------------------------------------------------------------
    def _answer(self, request: Request) -> bool:
        """Answer one request; whether the connection stays open for the next."""
        try:
            status, body, keep = self._route(request)
        except BadRequest as exc:
            status, body, keep = exc.status, {"detail": exc.detail}, False
        except OSError:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            status, body = 500, {"detail": "The agent failed on this request; see its log."}
            keep = request.keep_alive
        keep = keep and request.keep_alive and not self.server.closing
        self._send(status, body, close=not keep)
        if log.isEnabledFor(logging.DEBUG):
            log.debug('%s "%s %s %s" %d', self.client_address[0], request.method,
                      request.path, request.version, status)  # fmt: skip
        return keep

    def _route(self, request: Request) -> tuple[int, dict[str, Any], bool]:
        """(status, JSON body, whether the connection can be kept)."""
        length = self._body_length(request)
        if request.method == "POST" and request.route == "/predict":
            return self._predict(request, length)
        keep = self._discard(request, length)
        if request.method == "GET":
            if request.route == "/healthz":
                return 200, self.server.agent.health(), keep
            if request.route == "/predict":
                return 405, {"detail": "Use POST /predict with a JSON body."}, keep
            return 404, {"detail": f"No such endpoint: GET {request.path}."}, keep
        if request.method == "POST":
            return 404, {"detail": f"No such endpoint: POST {request.path}."}, keep
        return 501, {"detail": f"Unsupported method ({request.method!r})."}, keep

    def _discard(self, request: Request, length: int) -> bool:
        """Read and drop a body this server has no use for; False when it is too long to."""
        if length > MAX_BODY:
            return False
        self._read_body(request, length)
        return True

    def _predict(self, request: Request, length: int) -> tuple[int, dict[str, Any], bool]:
        if length < 0:
            detail = "Send the JSON body with a Content-Length header."
            return 400, {"detail": detail, "errors": []}, False
        if length > MAX_BODY:  # the body is not read: the connection is closed after the answer
            return (
                400,
                {
                    "detail": f"The request body is {length} bytes; at most {MAX_BODY} are "
                    f"accepted (and at most {MAX_ROWS} rows per request).",
                    "errors": [],
                },
                False,
            )
        data = self._read_body(request, length)
        if len(data) < length:
            raise ConnectionResetError("the client closed the connection within the body")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"detail": f"JSON parse error - {exc}", "errors": []}, True
        status, answer = self.server.agent.predict(body)
        if status == 200:
            answer["warnings"] = self._warnings(body, answer)
        return status, answer, True

    def _warnings(self, body: Any, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The central API's `warnings` (categories never seen in training), from the model
        that answered (the one active now, unless a swap came in between)."""
        model = self.server.agent.current()
        answered = (answer.get("predictions") or [{}])[0].get("model") or {}
        if model is None or answered.get("version") != model.serving.version:
            return []
        return unseen_categories(model.serving, parse_rows(body))

    def _send(self, status: int, body: dict[str, Any], close: bool) -> None:
        """The whole answer in one write."""
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
            f"Server: {SERVER}\r\nDate: {_date()}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"{CLOSE if close else ''}\r\n"
        )
        with contextlib.suppress(OSError):  # the client went away: nothing to tell it
            self.connection.sendall(head.encode("latin-1") + data)


_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def make_server(agent: Agent, host: str = "127.0.0.1", port: int = 8080) -> EdgeServer:
    return EdgeServer((host, port), agent)
