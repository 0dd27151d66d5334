"""Command lines for Flower's SuperLink (district server) and SuperNodes (school servers), and a
byte-counting TCP forwarder used by the tests (to read every byte the SuperLink receives) and
the bench (bytes per school per round). No Django.

Flower 1.42 serves the Fleet, Control and ServerAppIo APIs on one HTTP port (`--port`); the
SuperLink starts `flower-superexec`, which starts `flwr-serverapp` per run: all three must be on
PATH, hence `flower_env()`.
"""

from __future__ import annotations

import contextlib
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
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped.set()
        self._server.close()
        with self.lock:
            for s in self._sockets:
                s.close()


def describe(command: Sequence[str]) -> str:
    return " ".join(command)


class LocalFederation:
    """A SuperLink and one SuperNode per school on this machine (tests and bench): each
    SuperNode reaches the SuperLink through its own TcpForwarder, so the bytes each school sends
    and receives are counted (and kept, with `capture=True`). Logs go to `workdir`."""

    def __init__(self, workdir: Path, schools: dict[str, Path], *, capture: bool = False) -> None:
        import subprocess
        import time

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._subprocess = subprocess
        self.processes: dict[str, subprocess.Popen] = {}
        self.forwarders: dict[str, TcpForwarder] = {}
        port, *node_ports = free_ports(1 + len(schools))
        self.address = f"127.0.0.1:{port}"
        self._start("superlink", superlink_command(port=port), self.workdir / "flwr-superlink")
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"The SuperLink did not start: see {self.workdir}") from None
                time.sleep(0.2)
        for (code, records), node_port in zip(schools.items(), node_ports, strict=True):
            forwarder = TcpForwarder(("127.0.0.1", port), capture=capture)
            self.forwarders[code] = forwarder
            command = supernode_command(
                superlink=forwarder.address, school=code, records=records, port=node_port
            )
            self._start(code, command, self.workdir / f"flwr-{code}")

    def _start(self, name: str, command: list[str], home: Path) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = self._subprocess.Popen(
            command,
            env=flower_env(home),
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own group: stopping it stops Flower's children too
        )

    def stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except self._subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def mark(self) -> dict[str, int]:
        """Where each school's captured upstream stands now (for `upstream(since=...)`)."""
        return {code: len(f.upstream) for code, f in self.forwarders.items()}

    def upstream(self, since: dict[str, int] | None = None) -> bytes:
        """Every byte the SuperNodes sent towards the SuperLink (after `since`)."""
        since = since or {}
        return b"".join(bytes(f.upstream[since.get(c, 0) :]) for c, f in self.forwarders.items())

    def downstream(self) -> bytes:
        return b"".join(bytes(f.downstream) for f in self.forwarders.values())

    def byte_counts(self) -> dict[str, tuple[int, int]]:
        return {code: f.counts() for code, f in self.forwarders.items()}

    def close(self) -> None:
        for name in [n for n in self.processes if n != "superlink"]:
            self.stop(name)
        self.stop("superlink")
        for forwarder in self.forwarders.values():
            forwarder.stop()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
