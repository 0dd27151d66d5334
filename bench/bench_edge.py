"""The edge agent against raw ONNX Runtime, and what a sync costs on the wire.

Real processes on loopback: the district server (gunicorn, PostgreSQL), a byte-counting TCP
proxy between it and the agent (every byte each way, headers included), and the agent
(`python -m edumlops.edge run`). Reported:

- cold start: process start to the first answered /predict, with the bundle already in the
  cache (a restart at a school) and with an empty cache (first start: register, download, verify);
- resident memory of the agent process (VmRSS) after 2,000 predictions, next to a bare Python
  process that imports onnxruntime and loads the same model (the anchor);
- local /predict latency, one row per request over HTTP on loopback, p50/p99, against raw
  `session.run` on the same row in this process (the anchor), and their ratio;
- bytes per sync: polls with nothing changed (a conditional request answered 304), and the sync
  that fetches a new bundle.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/edumlops_bench_edge"
)
N_PREDICT = int(os.environ.get("BENCH_EDGE_PREDICTIONS", "2000"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingProxy:
    """Forwards 127.0.0.1:<port> to the server and counts the bytes both ways, per connection
    (the agent opens one per request), with the request's method and path."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.up = 0  # agent → server
        self.down = 0  # server → agent
        self.connections: list[dict] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            record = {"request": "", "up": 0, "down": 0}
            with self.lock:
                self.connections.append(record)
            for args in ((client, upstream, "up", record), (upstream, client, "down", record)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, way: str, record: dict) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    if way == "up":
                        self.up += len(data)
                        if not record["request"]:
                            record["request"] = data.split(b"\r\n", 1)[0].decode(errors="replace")
                    else:
                        self.down += len(data)
                    record[way] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def total(self) -> int:
        with self.lock:
            return self.up + self.down

    def mark(self) -> int:
        with self.lock:
            return len(self.connections)

    def since(self, mark: int, path: str = "") -> tuple[int, int]:
        """(requests, bytes both ways) since `mark`, for requests to `path` (all when empty)."""
        with self.lock:
            found = [c for c in self.connections[mark:] if path in c["request"]]
            return len(found), sum(c["up"] + c["down"] for c in found)


def request(port: int, method: str, path: str, body=None, headers=None, timeout=10):  # noqa: ANN001, ANN201
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(
            method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 60.0, what: str = ""):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup(tmp: Path):  # noqa: ANN201
    import psycopg

    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DATABASE_URL=DB_URL,
        EDUMLOPS_VAR_DIR=str(tmp / "var"),
        DEBUG="false",
        EDUMLOPS_EDGE_POLL_SECONDS="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "edumlops.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from edumlops.core.models import UserKey
    from edumlops.deployments import services
    from edumlops.schools.models import District, Membership, School
    from tests.edge.conftest import edge_model

    district = District.objects.create(name="Bench", slug="bench")
    school = School.objects.create(
        district=district, code="b1", name="Bench High", size_band="large", enrollment=900,
        locality="urban",
    )  # fmt: skip
    admin = get_user_model().objects.create_user("bench-admin")
    Membership.objects.create(user=admin, role=Membership.Role.ADMIN, district=district)
    model = edge_model(district, seed=0)
    services.roll_out(model, scope="district", reason="bench")
    return env, school, UserKey.issue(admin, "bench")[1], model, district


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "edumlops.wsgi", "-w", "1", "--threads", "4",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    wait_for(lambda: request(port, "GET", "/healthz")[0] == 200, 60, "gunicorn")
    return proc


def agent_env() -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", "EDUMLOPS_VAR_DIR", "DJANGO_SETTINGS_MODULE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def start_agent(cache: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start the agent; seconds from the process start to its first answered prediction."""
    from tests.deployments.conftest import rows_for

    body = {"rows": rows_for(1, seed=2)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edumlops.edge", "run", "--cache", str(cache), "--port", str(port),
         "--poll", "1"],
        cwd=ROOT, env=agent_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: request(port, "POST", "/predict", body)[0] == 200, 120, "a prediction")
    return proc, time.perf_counter() - started


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def anchor_rss(bundle: Path) -> float:
    """A bare process: import onnxruntime and numpy, load the model, run it once."""
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession(open({str(bundle / 'model.onnx')!r}, 'rb').read(), "
        "providers=['CPUExecutionProvider'])\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env, school, admin_token, model, district = setup(tmp)
        from tests.deployments.conftest import rows_for

        server_port = free_port()
        server = serve(env, server_port)
        proxy = CountingProxy(server_port)
        agents = []
        try:
            status, node = request(
                server_port, "POST", "/api/edge/nodes/", {"school": school.pk, "name": "bench"},
                {"Authorization": f"Bearer {admin_token}"},
            )  # fmt: skip
            assert status == 201, node
            cache = tmp / "edge"
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "edumlops.edge", "register", "--server",
                 f"http://127.0.0.1:{proxy.port}", "--token", node["token"], "--cache", str(cache)],
                cwd=ROOT, env=agent_env(), check=True, capture_output=True,
            )  # fmt: skip
            register_seconds = time.perf_counter() - t0
            port = free_port()
            agent, first_seconds = start_agent(cache, port)
            agents.append(agent)

            # local predict latency: one row per request over HTTP on loopback
            row = {"rows": rows_for(1, seed=7)}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            data = json.dumps(row).encode()
            times = []
            for i in range(N_PREDICT + 200):
                t = time.perf_counter()
                conn.request("POST", "/predict", body=data,
                             headers={"Content-Type": "application/json"})  # fmt: skip
                response = conn.getresponse()
                response.read()
                if i >= 200:
                    times.append(time.perf_counter() - t)
                assert response.status == 200
            conn.close()
            agent_rss = rss_mib(agent.pid)

            # the anchor: raw session.run on the same row, same bundle
            from edumlops.ml.runtime import OrtModel
            from edumlops.ml.serving_core import ServingModel, feed

            bundle = cache / "bundles" / str(model.pk)
            manifest = json.loads((bundle / "manifest.json").read_text())
            serving = ServingModel.from_manifest(
                manifest, OrtModel((bundle / "model.onnx").read_bytes())
            )
            arrays = feed(serving, row["rows"])
            session, out = serving.onnx.session, serving.onnx._proba
            raw = []
            for i in range(N_PREDICT + 200):
                t = time.perf_counter()
                session.run([out], arrays)
                if i >= 200:
                    raw.append(time.perf_counter() - t)
            base_rss = anchor_rss(bundle)

            # bytes per sync with nothing changed: a conditional GET answered 304
            time.sleep(3)
            mark = proxy.mark()
            time.sleep(10)
            polls, poll_bytes = proxy.since(mark, "/api/edge/manifest/")
            reports, report_bytes = proxy.since(mark, "/api/edge/report/")

            # a new bundle: from the rollout to the agent serving it
            from edumlops.deployments import services
            from tests.edge.conftest import edge_model

            newer = edge_model(district, seed=1)
            before = proxy.total()
            services.roll_out(newer, scope="district", reason="bench")
            wait_for(
                lambda: request(port, "GET", "/healthz")[1]["active_version"] == newer.pk,
                60,
                "the new bundle",
            )
            changed_bytes = proxy.total() - before
            bundle_bytes = sum(
                p.stat().st_size for p in (cache / "bundles" / str(newer.pk)).iterdir()
            )

            # a restart at the school: the bundle is in the cache
            stop(agent)
            agents.remove(agent)
            agent, warm_seconds = start_agent(cache, port)
            agents.append(agent)

            p = statistics.quantiles
            ours50, ours99 = statistics.median(times) * 1e3, p(times, n=100)[98] * 1e3
            raw50, raw99 = statistics.median(raw) * 1e3, p(raw, n=100)[98] * 1e3
            print("Loopback, 2 cores; logistic regression bundle, 9 features; one agent process.")
            print()
            print("| measure | agent | anchor | ratio |")
            print("| --- | ---: | ---: | ---: |")
            print(
                f"| /predict 1 row p50 / p99 ms (anchor: raw session.run) | {ours50:.3f} / "
                f"{ours99:.3f} | {raw50:.3f} / {raw99:.3f} | {ours50 / raw50:.0f}x / "
                f"{ours99 / raw99:.0f}x |"
            )
            print(
                f"| resident memory MiB after {N_PREDICT:,} predictions (anchor: python + "
                f"onnxruntime + the model) | {agent_rss:.0f} | {base_rss:.0f} | "
                f"{agent_rss / base_rss:.2f}x |"
            )
            print(f"| cold start to first prediction s, bundle cached | {warm_seconds:.2f} | | |")
            print(
                f"| cold start to first prediction s, empty cache (download + verify) | "
                f"{first_seconds:.2f} | | |"
            )
            print(f"| register s | {max(register_seconds, 0):.2f} | | |")
            print(
                f"| bytes per manifest poll, nothing changed (304), {polls} polls in 10 s | "
                f"{poll_bytes / max(polls, 1):,.0f} | | |"
            )
            print(
                f"| bytes per heartbeat report, {reports} in 10 s | "
                f"{report_bytes / max(reports, 1):,.0f} | | |"
            )
            print(
                f"| bytes for the sync that fetches a new bundle (anchor: bundle size) | "
                f"{changed_bytes:,} | {bundle_bytes:,} | {changed_bytes / bundle_bytes:.2f}x |",
                flush=True,
            )
        finally:
            for a in agents:
                stop(a)
            stop(server)


if __name__ == "__main__":
    main()
