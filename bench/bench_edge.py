"""The edge agent against raw ONNX Runtime, and what a sync costs on the wire.

Real processes on loopback: the district server (gunicorn, PostgreSQL), a byte-counting TCP
proxy between it and the agent (every byte each way, headers included), and the agent
(`python -m edumlops.edge run`). Reported, with the issue's goals beside the numbers:

- cold start with an empty cache, COLD_RUNS times: from the start of `edumlops-edge register`
  to the first answered /predict of `edumlops-edge run` (register, manifest, download, verify,
  load), median and max; the same from the start of `run` alone; and, apart, the first node
  after a rollout, when the district server also copies the bundle out of MLflow (once per
  version, whichever school asks first). Goal: 2 s or less.
- cold start with the bundle in the cache (a restart at a school), COLD_RUNS times.
- local /predict latency, one row per request on one keep-alive connection, p50/p99, in ROUNDS
  rounds, each beside raw `session.run` on the same row in this process (the anchor) measured
  right after it: with Python's http.client (the client the goal was measured with; its own
  parsing included) and with wrk (a C client, as bench_predict uses; when installed). Beside
  them, the floor of any such measure on this machine: the same client against the agent's HTTP
  server answering a constant (no model, no telemetry). The median round is reported, and each
  round's p99 ratio. Goal: p99 within 10x of session.run's. The agent syncs, reports and uploads
  every second meanwhile (`--poll 1`; a school's agent does so every minute).
- resident memory of the agent process (VmRSS) after the predictions, next to a bare Python
  process that imports onnxruntime and loads the same model (the anchor);
- bytes per sync: polls with nothing changed (a conditional request answered 304), and the sync
  that fetches a new bundle.

The machine is shared (2 cores): the load average is printed with the table, and tail
latencies move with it; compare within one run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
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
COLD_RUNS = int(os.environ.get("BENCH_EDGE_COLD_RUNS", "5"))
ROUNDS = int(os.environ.get("BENCH_EDGE_ROUNDS", "5"))
WRK_SECONDS = float(os.environ.get("BENCH_EDGE_WRK_SECONDS", "4"))
COLD_GOAL_S = 2.0
P99_GOAL_X = 10.0


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


def wait_for(predicate, timeout: float = 60.0, what: str = "", every: float = 0.05):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(every)
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
    wait_for(
        lambda: request(port, "POST", "/predict", body, timeout=2)[0] == 200,
        120,
        "a prediction",
        every=0.005,
    )
    return proc, time.perf_counter() - started


def register(cache: Path, server_url: str, token: str) -> float:
    """`edumlops-edge register` into `cache`; its seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edumlops.edge", "register", "--server", server_url, "--token",
         token, "--cache", str(cache)],
        cwd=ROOT, env=agent_env(), check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def cold_start(cache: Path, server_url: str, token: str) -> tuple[float, float]:
    """An empty cache to the first answer: (register + run, run alone) in seconds."""
    shutil.rmtree(cache, ignore_errors=True)
    registering = register(cache, server_url, token)
    proc, running = start_agent(cache, free_port())
    stop(proc)
    return registering + running, running


def quantiles(times: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    return statistics.median(times) * 1e3, statistics.quantiles(times, n=100)[98] * 1e3


def http_client_latency(port: int, data: bytes) -> tuple[float, float]:
    """Sequential requests on one keep-alive http.client connection: p50, p99 ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for i in range(N_PREDICT + 200):
        t = time.perf_counter()
        conn.request("POST", "/predict", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if i >= 200:
            times.append(time.perf_counter() - t)
        assert response.status == 200
    conn.close()
    return quantiles(times)


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no {label}% latency:\n{text}")
    return float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]


def wrk_latency(port: int, data: bytes, script: Path) -> tuple[float, float] | None:
    """wrk, one thread, one keep-alive connection, WRK_SECONDS: p50, p99 ms (None: no wrk)."""
    if shutil.which("wrk") is None:
        return None
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(data.decode())}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{WRK_SECONDS:g}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/predict"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk got errors:\n{out}")
    return _wrk_ms(out, "50"), _wrk_ms(out, "99")


BARE = """
import sys
from edumlops.edge.server import EdgeServer


class Constant:  # the agent's HTTP server with nothing behind it
    answer = {"school": 1, "predictions": [{"probability": 0.5, "risk_band": "medium",
              "model": {"name": "bare", "version": "1"}, "deployment": None}]}

    def predict(self, body):
        return 200, dict(self.answer)

    def current(self):
        return None


EdgeServer(("127.0.0.1", int(sys.argv[1])), Constant()).serve_forever(0.2)
"""


def bare_endpoint(port: int) -> subprocess.Popen[bytes]:
    """The floor: the agent's HTTP server answering a constant to POST /predict."""
    proc = subprocess.Popen([sys.executable, "-c", BARE, str(port)], cwd=ROOT, env=agent_env())
    body = {"rows": [{}]}
    wait_for(lambda: request(port, "POST", "/predict", body)[0] == 200, 30, "the bare endpoint")
    return proc


def session_latency(session, out: str, arrays: dict) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for i in range(N_PREDICT + 200):
        t = time.perf_counter()
        session.run([out], arrays)
        if i >= 200:
            times.append(time.perf_counter() - t)
    return quantiles(times)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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
        load_before = load_average()
        try:
            status, node = request(
                server_port, "POST", "/api/edge/nodes/", {"school": school.pk, "name": "bench"},
                {"Authorization": f"Bearer {admin_token}"},
            )  # fmt: skip
            assert status == 201, node
            url, token = f"http://127.0.0.1:{proxy.port}", node["token"]

            # cold starts with an empty cache: the first fills the server's copy from MLflow
            first_total, first_run = cold_start(tmp / "first", url, token)
            cold = [cold_start(tmp / f"cold-{i}", url, token) for i in range(COLD_RUNS)]
            cold_total, cold_run = [t for t, _ in cold], [r for _, r in cold]

            cache = tmp / "edge"
            register_seconds = register(cache, url, token)
            port = free_port()
            agent, _ = start_agent(cache, port)
            agents.append(agent)

            # the anchor: raw session.run on the same row, same bundle
            from edumlops.ml.runtime import OrtModel
            from edumlops.ml.serving_core import ServingModel, feed

            row = {"rows": rows_for(1, seed=7)}
            data = json.dumps(row).encode()
            bundle = cache / "bundles" / str(model.pk)
            manifest = json.loads((bundle / "manifest.json").read_text())
            serving = ServingModel.from_manifest(
                manifest, OrtModel((bundle / "model.onnx").read_bytes())
            )
            arrays = feed(serving, row["rows"])
            session, out = serving.onnx.session, serving.onnx._proba

            # local predict latency in rounds: per client, the agent, the bare endpoint, and
            # session.run right after
            bare_port = free_port()
            bare = bare_endpoint(bare_port)
            lua = tmp / "post.lua"
            rounds: list[dict[str, tuple | None]] = []
            try:
                for _ in range(ROUNDS):
                    rounds.append(
                        {
                            "client": http_client_latency(port, data),
                            "client_bare": http_client_latency(bare_port, data),
                            "client_anchor": session_latency(session, out, arrays),
                            "wrk": wrk_latency(port, data, lua),
                            "wrk_bare": wrk_latency(bare_port, data, lua),
                            "wrk_anchor": session_latency(session, out, arrays),
                        }
                    )
            finally:
                stop(bare)
            agent_rss = rss_mib(agent.pid)
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

            # restarts at the school: the bundle is in the cache
            stop(agent)
            agents.remove(agent)
            warm = []
            for _ in range(COLD_RUNS):
                agent, seconds = start_agent(cache, port)
                warm.append(seconds)
                stop(agent)

            print_table(
                rounds=rounds,
                agent_rss=agent_rss,
                base_rss=base_rss,
                cold_total=cold_total,
                cold_run=cold_run,
                first=(first_total, first_run),
                warm=warm,
                register_seconds=register_seconds,
                polls=(polls, poll_bytes),
                reports=(reports, report_bytes),
                changed=(changed_bytes, bundle_bytes),
                load=(load_before, load_average()),
            )
        finally:
            for a in agents:
                stop(a)
            stop(server)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def print_table(*, rounds, agent_rss, base_rss, cold_total, cold_run, first, warm,  # noqa: ANN001
                register_seconds, polls, reports, changed, load) -> None:  # fmt: skip
    print("Loopback, 2 cores (shared); logistic regression bundle, 9 features; one agent process.")
    print(
        f"Load average before / after: {load[0]} / {load[1]}. {ROUNDS} rounds of /predict "
        f"(median round shown), {COLD_RUNS} cold starts of each kind."
    )
    print()
    print("| measure | agent | anchor | ratio | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
    med = statistics.median
    for client, label in (("client", "Python http.client"), ("wrk", "wrk -t1 -c1")):
        if rounds[0][client] is None:
            print(f"| /predict 1 row, {label} | not installed | | | |")
            continue
        ours = [r[client] for r in rounds]
        bare = [r[f"{client}_bare"] for r in rounds]
        anchor = [r[f"{client}_anchor"] for r in rounds]
        o50, o99 = med(o[0] for o in ours), med(o[1] for o in ours)
        b50, b99 = med(b[0] for b in bare), med(b[1] for b in bare)
        a50, a99 = med(a[0] for a in anchor), med(a[1] for a in anchor)
        ratios = [o[1] / a[1] for o, a in zip(ours, anchor, strict=True)]
        print(
            f"| /predict 1 row p50 / p99 ms, {label} (anchor: raw session.run; rounds' p99 "
            f"ratios {', '.join(f'{x:.1f}x' for x in ratios)}) | {o50:.3f} / {o99:.3f} | "
            f"{a50:.3f} / {a99:.3f} | {o50 / a50:.0f}x / {o99 / a99:.1f}x | p99 ≤ "
            f"{P99_GOAL_X:.0f}x: {_verdict(med(ratios) <= P99_GOAL_X)} (median round) |"
        )
        print(
            f"| the floor: the same client and HTTP server answering a constant, p50 / p99 ms "
            f"| {b50:.3f} / {b99:.3f} | {a50:.3f} / {a99:.3f} | {b50 / a50:.0f}x / "
            f"{b99 / a99:.1f}x | |"
        )
    print(
        f"| cold start s, empty cache: register + run to the first answer, median / max | "
        f"{med(cold_total):.2f} / {max(cold_total):.2f} | | | ≤ {COLD_GOAL_S:.0f} s: "
        f"{_verdict(max(cold_total) <= COLD_GOAL_S)} |"
    )
    print(
        f"| cold start s, empty cache: run alone to the first answer, median / max | "
        f"{med(cold_run):.2f} / {max(cold_run):.2f} | | | ≤ {COLD_GOAL_S:.0f} s: "
        f"{_verdict(max(cold_run) <= COLD_GOAL_S)} |"
    )
    print(
        f"| first node after a rollout s (the server copies the bundle out of MLflow too), "
        f"register + run / run | {first[0]:.2f} / {first[1]:.2f} | | | |"
    )
    print(
        f"| cold start s, bundle cached (a restart), median / max | {med(warm):.2f} / "
        f"{max(warm):.2f} | | | |"
    )
    print(f"| register s | {register_seconds:.2f} | | | |")
    print(
        f"| resident memory MiB after the predictions (anchor: python + onnxruntime + the model) "
        f"| {agent_rss:.0f} | {base_rss:.0f} | {agent_rss / base_rss:.2f}x | |"
    )
    (n_polls, poll_bytes), (n_reports, report_bytes) = polls, reports
    print(
        f"| bytes per manifest poll, nothing changed (304), {n_polls} polls in 10 s | "
        f"{poll_bytes / max(n_polls, 1):,.0f} | | | |"
    )
    print(
        f"| bytes per heartbeat report, {n_reports} in 10 s | "
        f"{report_bytes / max(n_reports, 1):,.0f} | | | |"
    )
    changed_bytes, bundle_bytes = changed
    print(
        f"| bytes for the sync that fetches a new bundle (anchor: bundle size) | "
        f"{changed_bytes:,} | {bundle_bytes:,} | {changed_bytes / bundle_bytes:.2f}x | |",
        flush=True,
    )


if __name__ == "__main__":
    main()
