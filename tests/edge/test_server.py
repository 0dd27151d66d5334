"""The agent's HTTP/1.1 server, spoken to byte by byte: keep-alive and pipelined requests,
HTTP/1.0 clients, `Expect: 100-continue` (curl sends it for bodies over 1 KB), a body that
arrives in pieces, and the requests it refuses (with a JSON 4xx/5xx and a closed connection):
a line that is not HTTP, too long a line, too many headers, a chunked body, no Content-Length,
an unknown method."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from edumlops.edge.agent import Agent
from edumlops.edge.server import MAX_HEADERS, MAX_LINE, make_server
from tests.edge.bundles import DistrictDouble, make_bundle, new_key, register, request_rows


@pytest.fixture
def port(tmp_path):
    key = new_key()
    double = DistrictDouble(key)
    make_bundle(tmp_path / "server" / "1", key)
    double.bundles[1] = tmp_path / "server" / "1"
    double.desired = (1, 31)
    double.start()
    agent = Agent(register(tmp_path / "cache", double))
    assert agent.sync_once()
    httpd = make_server(agent, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    agent.queue.close()
    double.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_answer(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], dict]:
    """One answer off the connection (what is left over stays in `buffer`)."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, f"the connection closed before an answer: {bytes(buffer)!r}"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        data = sock.recv(65536)
        assert data
        rest += data
    buffer[:] = rest[length:]
    return status, headers, json.loads(rest[:length])


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _post(body: bytes, *, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return (
        f"POST /predict {version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


BODY = json.dumps({"rows": request_rows(2)}).encode()


def test_pipelined_requests_on_one_connection_are_answered_in_order(port):
    sock = _connect(port)
    sock.sendall(_post(BODY) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + _post(BODY))
    buffer = bytearray()
    first, second, third = (_read_answer(sock, buffer) for _ in range(3))
    assert first[0] == 200 and len(first[2]["predictions"]) == 2
    assert second[0] == 200 and second[2]["active_version"] == 1
    assert third[0] == 200 and third[2] == first[2]
    assert "connection" not in first[1] and first[1]["content-type"] == "application/json"
    sock.close()


def test_an_http_1_0_client_is_answered_and_closed_unless_it_asks_to_keep_alive(port):
    sock = _connect(port)
    sock.sendall(_post(BODY, version="HTTP/1.0"))
    status, headers, _ = _read_answer(sock, bytearray())
    assert status == 200 and headers["connection"] == "close" and _closed(sock)

    sock = _connect(port)
    sock.sendall(_post(BODY, version="HTTP/1.0", extra="Connection: keep-alive\r\n") * 2)
    buffer = bytearray()
    assert _read_answer(sock, buffer)[0] == _read_answer(sock, buffer)[0] == 200
    sock.close()


def test_expect_100_continue_is_answered_before_the_body_is_sent(port):
    sock = _connect(port)
    head, _, body = _post(BODY, extra="Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n")
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(body)
    assert _read_answer(sock, bytearray())[0] == 200
    sock.close()


def test_a_body_that_arrives_in_pieces_is_read_whole(port):
    sock = _connect(port)
    request = _post(BODY)
    for i in range(0, len(request), 50):
        sock.sendall(request[i : i + 50])
        time.sleep(0.002)
    assert _read_answer(sock, bytearray())[0] == 200
    sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        (b"HELLO\r\n\r\n", 400, "Not an HTTP/1.x request line"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 400, "Not an HTTP/1.x request line"),
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", 414, "longer than"),
        (
            b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n",
            431,
            "header lines",
        ),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400, "Not a header line"),
        (
            b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
            "Content-Length",
        ),
        (b"POST /predict HTTP/1.1\r\n\r\n", 400, "Content-Length"),
        (b"POST /predict HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400, "is not a number"),
    ],
    ids=[
        "not-http",
        "http-2",
        "long-line",
        "many-headers",
        "bad-header",
        "chunked",
        "no-length",
        "bad-length",
    ],
)
def test_a_request_it_cannot_read_gets_a_json_error_and_the_connection_closes(
    port, request_bytes, status, says
):
    sock = _connect(port)
    sock.sendall(request_bytes)
    got, headers, body = _read_answer(sock, bytearray())
    assert got == status and says in body["detail"]
    assert headers["connection"] == "close" and _closed(sock)


def test_an_unknown_method_is_a_501_and_the_connection_goes_on(port):
    sock = _connect(port)
    sock.sendall(b"DELETE /predict HTTP/1.1\r\nHost: x\r\n\r\n" + _post(BODY))
    buffer = bytearray()
    status, _, body = _read_answer(sock, buffer)
    assert status == 501 and "DELETE" in body["detail"]
    assert _read_answer(sock, buffer)[0] == 200
    sock.close()


def test_a_client_that_goes_away_mid_body_does_not_stop_the_server(port):
    sock = _connect(port)
    sock.sendall(_post(BODY)[:-10])
    sock.close()
    fresh = _connect(port)
    fresh.sendall(_post(BODY))
    assert _read_answer(fresh, bytearray())[0] == 200
    fresh.close()
