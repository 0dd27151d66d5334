"""HTTP to the district server with urllib: JSON calls with the node's Bearer token and timeouts,
conditional GETs (If-None-Match → 304), and bundle downloads that resume with
`Range: bytes=N-` into a `.part` file and can be capped to a bandwidth for slow links. Every byte
each way is counted (headers approximately), for the bytes-per-sync benchmark."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from edumlops.edge import __version__

log = logging.getLogger("edumlops.edge")

CHUNK = 64 * 1024


class ClientError(Exception):
    """A call to the server did not give a usable answer."""


class Unreachable(ClientError):
    """No answer at all: connection refused, DNS, timeout, a connection cut mid-answer."""


class Interrupted(ClientError):
    """The agent is stopping; a download stops where it is (its .part is kept)."""


class HTTPStatusError(ClientError):
    """The server answered with an unexpected status; `detail` is its message, if any."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def detail(self) -> str:
        """The server's message: `detail` of a JSON body, else the start of the body."""
        try:
            data = self.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("detail"):
            return str(data["detail"])
        text = self.body[:300].decode(errors="replace").strip()
        return text or "(no message)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as they are: a node's token is never sent to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """One district server. `max_kbps` caps downloads at that many kilobytes per second."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout: float = 15.0,
        max_kbps: float | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.rate = max_kbps * 1024 if max_kbps else None  # bytes per second
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._count = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.server + "/" + path.lstrip("/")

    def transferred(self) -> int:
        with self._count:
            return self.bytes_sent + self.bytes_received

    def _counted(self, sent: int = 0, received: int = 0) -> None:
        with self._count:
            self.bytes_sent += sent
            self.bytes_received += received

    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """An open response (any status), or Unreachable."""
        all_headers = {"User-Agent": f"edumlops-edge/{__version__}", "Accept": "application/json"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        url = self.url(path)
        request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        head = len(method) + len(url) + 12  # the request line, then each "Name: value\r\n"
        head += sum(len(k) + len(v) + 4 for k, v in all_headers.items())
        self._counted(sent=head + len(body or b""))
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:  # an answer with an error status: still an answer
            response = exc
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{self.server} cannot be reached: {reason}") from None
        self._counted(received=17 + len(str(response.headers)))
        return response

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One JSON call; the whole answer is read (any status)."""
        body = None
        extra = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload).encode()
            extra["Content-Type"] = "application/json"
        response = self._open(method, path, body, extra)
        try:
            data = response.read()
        except Exception as exc:  # resets, timeouts, http.client.IncompleteRead
            raise Unreachable(f"{self.server} cut the answer short: {exc!r}") from None
        finally:
            response.close()
        self._counted(received=len(data))
        return Response(_status(response), response.headers, data)

    def get_json(self, path: str, etag: str | None = None) -> Response:
        return self.call("GET", path, headers={"If-None-Match": etag} if etag else None)

    def post_json(self, path: str, payload: Any) -> Response:
        return self.call("POST", path, payload)

    # --- downloads -----------------------------------------------------------------------------
    def download(
        self,
        path: str,
        part: Path,
        size: int | None = None,
        stop: threading.Event | None = None,
        label: str = "",
    ) -> int:
        """Fetch `path` into `part`, resuming from the bytes already there. Returns the bytes
        fetched now. A server that ignores the range (200) restarts the file; 416 means the part
        already holds the whole file (or is wrong: then it starts over)."""
        part = Path(part)
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            log.info(
                "%s: the partial file is longer than the file (%d > %d); starting over",
                label or part.name,
                have,
                size,
            )
            part.unlink()
            have = 0
        if size is not None and have == size:
            return 0
        headers = {"Accept": "*/*"}
        if have:
            headers["Range"] = f"bytes={have}-"
            log.info(
                "resuming %s at byte %d of %s (Range: bytes=%d-)",
                label or part.name,
                have,
                size if size is not None else "?",
                have,
            )
        response = self._open("GET", path, None, headers)
        try:
            status = _status(response)
            if status == 416 and have:
                # asked for bytes past the end: the part is complete (the caller checks it)
                # when it has the listed size, else it is wrong and starts over
                response.read()
                if size is None or have == size:
                    return 0
                part.unlink()
                return self.download(path, part, size, stop, label)
            if status == 206 and have:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start != have:
                    log.info(
                        "%s: the server resumed at %s, not %d; starting over",
                        label or part.name,
                        start,
                        have,
                    )
                    response.read()
                    part.unlink()
                    return self.download(path, part, size, stop, label)
                mode = "ab"
            elif status == 200:
                if have:
                    log.info(
                        "%s: the server ignored the range; downloading it again", label or part.name
                    )
                mode = "wb"
            else:
                detail = Response(status, response.headers, response.read()).detail()
                raise HTTPStatusError(status, detail)
            got = self._stream(response, part, mode, stop)
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and got < int(expected):
                # http.client ends a short body quietly: the link broke, the part is resumed
                raise Unreachable(
                    f"the download of {label or part.name} broke off after "
                    f"{part.stat().st_size} bytes"
                )
            return got
        finally:
            response.close()

    def _stream(self, response: Any, part: Path, mode: str, stop: threading.Event | None) -> int:
        got = 0
        started = time.monotonic()
        chunk = CHUNK if self.rate is None else int(max(1024, min(CHUNK, self.rate / 8)))
        with part.open(mode) as fh:
            while True:
                if stop is not None and stop.is_set():
                    raise Interrupted("stopping; the download resumes at the next start")
                try:
                    data = response.read(chunk)
                except Exception as exc:  # socket timeouts, resets, IncompleteRead
                    raise Unreachable(f"the download of {part.name} broke off: {exc!r}") from None
                if not data:
                    break
                fh.write(data)
                fh.flush()
                got += len(data)
                self._counted(received=len(data))
                if self.rate is not None:
                    ahead = got / self.rate - (time.monotonic() - started)
                    if ahead > 0 and stop is not None:
                        if stop.wait(ahead):
                            raise Interrupted("stopping; the download resumes at the next start")
                    elif ahead > 0:
                        time.sleep(ahead)
        return got


def _status(response: Any) -> int:
    return int(getattr(response, "status", None) or response.code)


def _range_start(content_range: str) -> int | None:
    """The first byte of `Content-Range: bytes 100-199/200`."""
    try:
        unit, rest = content_range.strip().split(" ", 1)
        if unit != "bytes":
            return None
        return int(rest.split("-", 1)[0])
    except ValueError:
        return None
