"""`edumlops-edge register | run | status`: clear errors for an unreachable server, a refused
token and a server that is not EduMLOps; `run` says when it serves, refuses a second agent on
the same cache, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edumlops.edge import cli
from edumlops.edge.agent import Agent
from tests.conftest import ROOT
from tests.edge.bundles import DistrictDouble, make_bundle, new_key, register, request_rows


@pytest.fixture
def double(tmp_path):
    key = new_key()
    d = DistrictDouble(key)
    make_bundle(tmp_path / "server" / "1", key, model_version_id=1, version="1")
    d.bundles[1] = tmp_path / "server" / "1"
    d.desired = (1, 31)
    d.start()
    yield d
    d.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_register_pins_the_districts_key_in_a_private_file(double, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = cli.main(
        ["register", "--server", double.url, "--token", "edge_test", "--cache", str(cache)]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "Registered rhs-server-1 for Riverside High School" in out
    node = json.loads((cache / "node.json").read_text())
    assert node["public_key_pem"] == double.hello()["public_key_pem"]
    assert node["token"] == "edge_test" and node["school"]["id"] == 7
    assert (cache / "node.json").stat().st_mode & 0o777 == 0o600


def test_register_says_when_the_server_cannot_be_reached(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    rc = cli.main(["register", "--server", url, "--token", "t", "--cache", str(tmp_path / "c")])
    assert rc == 2
    assert "cannot be reached" in capsys.readouterr().err
    assert not (tmp_path / "c" / "node.json").exists()


def test_register_says_when_the_token_is_refused(double, tmp_path, capsys):
    rc = cli.main(
        [
            "register",
            "--server",
            double.url,
            "--token",
            "edge_wrong",
            "--cache",
            str(tmp_path / "c"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "refused the token (401" in err and "revoked" in err


def test_register_says_when_the_server_is_not_edumlops(tmp_path, capsys):
    (tmp_path / "www").mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        rc = cli.main(["register", "--server", url, "--token", "t", "--cache", str(tmp_path)])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert rc == 2
    assert "does not look like an EduMLOps server" in capsys.readouterr().err


def test_run_without_registering_says_how(tmp_path, capsys):
    rc = cli.main(["run", "--cache", str(tmp_path / "nothing"), "--port", "0"])
    assert rc == 2 and "edumlops-edge register" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def _start(cache: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edumlops.edge",
            "run",
            "--cache",
            str(cache),
            "--port",
            "0",
            "--poll",
            "0.2",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    return proc, line


def _post(port: int, body: dict) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


def test_run_serves_refuses_a_second_agent_and_stops_cleanly(double, tmp_path):
    cache = register(tmp_path / "cache", double)
    seeded = Agent(cache)
    seeded.sync_once()  # the bundle is in the cache before the start
    seeded.queue.close()

    proc, line = _start(cache)
    try:
        assert line.startswith("serving on http://127.0.0.1:") and "(model at-risk v1)" in line
        port = int(line.split(":")[2].split(" ")[0])
        assert _post(port, {"rows": request_rows(2)})[0] == 200

        second = subprocess.run(
            [sys.executable, "-m", "edumlops.edge", "run", "--cache", str(cache), "--port", "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2 and "already runs" in second.stderr

        time.sleep(0.5)  # a sync, a report and an upload
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read()
        assert "stopping: finishing the requests in flight" in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert double.counted() == 2

    status = subprocess.run(
        [sys.executable, "-m", "edumlops.edge", "status", "--cache", str(cache), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(status.stdout)
    assert info["active_version"] == 1 and info["cached_versions"] == [1]
    assert info["telemetry"]["pending_rows"] == 0


def test_a_fresh_node_says_it_has_no_model_yet(double, tmp_path):
    cache = register(tmp_path / "cache", double)
    proc, line = _start(cache)
    try:
        assert "(no model yet)" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
