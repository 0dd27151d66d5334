"""The agent's local HTTP API on the standard library's threading server: `POST /predict` (the
central predict API's request, answer, warnings and errors, from the same serving core) and
`GET /healthz`. Keep-alive connections are served; on stop, requests in flight finish first."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edumlops.edge.agent import Agent
from edumlops.ml.serving_core import MAX_ROWS, parse_rows, unseen_categories

log = logging.getLogger("edumlops.edge.http")

# MAX_ROWS rows of a few dozen features each fit well within this
MAX_BODY = max(2 * 1024 * 1024, MAX_ROWS * 4096)


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections do not hold the process
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


class Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    protocol_version = "HTTP/1.1"
    server_version = "edumlops-edge"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # an idle keep-alive connection is closed after this

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        self.server.begin()
        try:
            if self.path.split("?", 1)[0] != "/predict":
                self._discard_body()
                self._send(404, {"detail": f"No such endpoint: POST {self.path}."})
                return
            status, body = self._predict()
            self._send(status, body)
        except Exception:
            log.exception("POST %s failed", self.path)
            self._send(500, {"detail": "The agent failed on this request; see its log."})
        finally:
            self.server.end()

    def do_GET(self) -> None:  # noqa: N802
        self.server.begin()
        try:
            route = self.path.split("?", 1)[0]
            if route == "/healthz":
                self._send(200, self.server.agent.health())
            elif route == "/predict":
                self._send(405, {"detail": "Use POST /predict with a JSON body."})
            else:
                self._send(404, {"detail": f"No such endpoint: GET {self.path}."})
        finally:
            self.server.end()

    def _predict(self) -> tuple[int, dict[str, Any]]:
        raw_length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or raw_length is None:
            self.close_connection = True
            return 400, {
                "detail": "Send the JSON body with a Content-Length header.",
                "errors": [],
            }
        try:
            length = int(raw_length)
        except ValueError:
            self.close_connection = True
            return 400, {"detail": f"Content-Length {raw_length!r} is not a number.", "errors": []}
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read
            return 400, {
                "detail": f"The request body is {length} bytes; at most {MAX_BODY} are accepted "
                f"(and at most {MAX_ROWS} rows per request).",
                "errors": [],
            }
        data = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"detail": f"JSON parse error - {exc}", "errors": []}
        status, answer = self.server.agent.predict(body)
        if status == 200:
            answer["warnings"] = self._warnings(body, answer)
        return status, answer

    def _warnings(self, body: Any, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The central API's `warnings` (categories never seen in training), from the model
        that answered (the one active now, unless a swap came in between)."""
        model = self.server.agent.current()
        answered = (answer.get("predictions") or [{}])[0].get("model") or {}
        if model is None or answered.get("version") != model.serving.version:
            return []
        return unseen_categories(model.serving, parse_rows(body))

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.closing or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


def make_server(agent: Agent, host: str = "127.0.0.1", port: int = 8080) -> EdgeServer:
    return EdgeServer((host, port), agent)
