"""Command lines for Flower's SuperLink (district server) and SuperNodes (school servers), and a
byte-counting TCP forwarder used by the tests (to read every byte the SuperLink receives) and
the bench (bytes per school per round). No Django.

Flower 1.42 serves the Fleet, Control and ServerAppIo APIs on one HTTP port (`--port`); the
SuperLink starts `flower-superexec`, which starts `flwr-serverapp` per run: all three must be on
PATH, hence `flower_env()`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

DEFAULT_SUPERLINK_PORT = 9093
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def flower_env(flwr_home: Path | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Flower's processes need: this interpreter's bin/ on PATH (the SuperLink
    execs flower-superexec and flwr-serverapp from PATH), edumlops importable, FLWR_HOME."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def superlink_command(
    *, host: str = "127.0.0.1", port: int = DEFAULT_SUPERLINK_PORT, database: str | None = None
) -> list[str]:
    """`flower-superlink` for the district server. `--insecure`: plain HTTP (put it behind TLS or
    on the district's private network); `--disable-runtime-dependency-installation`: the FAB's
    ServerApp runs with EduMLOps' own install, nothing is pip/uv-installed at run time."""
    command = [
        str(BIN / "flower-superlink"),
        "--insecure",
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if database is not None:  # default: Flower's in-memory state
        command += ["--database", database]
    return command


def supernode_command(
    *,
    superlink: str,
    school: str,
    records: str | Path,
    port: int,
    max_wait_time: float | None = None,
) -> list[str]:
    """`flower-supernode` for a school server: its node config names the school and the path
    of its own records file; `port` is its local ClientApp API (one per SuperNode on a host)."""
    command = [
        str(BIN / "flower-supernode"),
        "--insecure",
        "--superlink",
        superlink,
        "--node-config",
        f"school={_toml_string(school)} records={_toml_string(str(records))}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if max_wait_time is not None:
        command += ["--max-wait-time", str(max_wait_time)]
    return command


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class TcpForwarder:
    """Listens on a free loopback port and forwards each connection to `target`, keeping a copy
    of the bytes in each direction (`upstream`: towards the target) when `capture` is set, and
    counting them always. Threads only; stop() closes everything."""

    def __init__(self, target: tuple[str, int], *, capture: bool = False) -> None:
        self.target = target
        self.capture = capture
        self.lock = threading.Lock()
        self.upstream = bytearray()
        self.downstream = bytearray()
        self.bytes_up = 0
        self.bytes_down = 0
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.bytes_up, self.bytes_down

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self.lock:
                    if up:
                        self.bytes_up += len(data)
                        if self.capture:
                            self.upstream += data
                    else:
                        self.bytes_down += len(data)
                        if self.capture:
                            self.downstream += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()
        with self.lock:
            for s in self._sockets:
                s.close()


def describe(command: Sequence[str]) -> str:
    return " ".join(command)
