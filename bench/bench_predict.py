"""The predict endpoint under gunicorn on loopback against raw ONNX Runtime.

Anchor: `InferenceSession.run` in one process on the same rows (no HTTP, no validation, no
database). Ours: `POST /api/schools/{id}/predict/` served by gunicorn (2 workers x 4 threads,
DEBUG off) on PostgreSQL with an integration token — validation, the school's deployment,
the cached session, risk bands, linear explanations and the recorded predictions included.
Load: 8 client threads with keep-alive connections for a fixed time (a small Python load tool,
since wrk is not installed here; it shares the 2 cores with the server, so the server's numbers
are a lower bound). Reported: requests/s, p50/p99 latency, and the per-row cost ratio.

Needs PostgreSQL (BENCH_DATABASE_URL, default .../edumlops_bench, created here).
"""

from __future__ import annotations

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
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/edumlops_bench")
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(tmp: Path) -> tuple[dict[str, str], int, str, list[dict], object]:
    import psycopg

    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(DATABASE_URL=DB_URL, EDUMLOPS_VAR_DIR=str(tmp / "var"), DEBUG="false")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "edumlops.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from edumlops.deployments import services, tokens
    from edumlops.schools.models import District, School
    from tests.deployments.conftest import make_model, rows_for

    district = District.objects.create(name="Bench", slug="bench")
    school = School.objects.create(
        district=district, code="b1", name="Bench High", size_band="large", enrollment=900,
        locality="urban",
    )  # fmt: skip
    model = make_model(district, seed=0)
    services.roll_out(model, scope="district", reason="bench")
    _, key = tokens.create(district, "bench", None)
    from edumlops.deployments import serving

    return env, school.pk, key, rows_for(100, seed=5), serving.load(model)


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "edumlops.wsgi", "-w", "2", "--threads", "4",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def load(port: int, school: int, key: str, body: bytes) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = [0]
    stop = time.monotonic() + SECONDS
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            conn.request("POST", f"/api/schools/{school}/predict/", body, headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - t) * 1e3)
            if response.status != 200:
                failures[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures[0]


def raw_per_row_us(loaded, rows: list[dict], batch: int) -> float:
    from edumlops.deployments.serving import feed

    arrays = feed(loaded, rows[:batch])
    session, out = loaded.onnx.session, loaded.onnx._proba
    for _ in range(50):
        session.run([out], arrays)
    times = []
    for _ in range(500):
        t = time.perf_counter()
        session.run([out], arrays)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6 / batch


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env, school, key, rows, loaded = setup(Path(tmp))
        port = free_port()
        server = serve(env, port)
        try:
            print(
                f"gunicorn 2 workers x 4 threads, {CLIENTS} client threads for {SECONDS:g} s "
                "each case; logistic regression, 9 features"
            )
            print()
            print(
                "| case | requests/s | rows/s | p50 ms | p99 ms | errors | our cost per row µs "
                "| raw session.run per row µs | ratio |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for batch in (1, 100):
                body = json.dumps({"rows": rows[:batch]}).encode()
                load(port, school, key, body)  # warm up: sessions load, connections open
                latencies, errors = load(port, school, key, body)
                rps = len(latencies) / SECONDS
                ours = 1e6 / (rps * batch)  # wall time per row the server delivers
                raw = raw_per_row_us(loaded, rows, batch)
                ordered = sorted(latencies)
                p99 = ordered[int(0.99 * (len(ordered) - 1))]
                print(
                    f"| {batch} row{'s' if batch > 1 else ''} per request | {rps:,.0f} "
                    f"| {rps * batch:,.0f} | {statistics.median(ordered):.1f} | {p99:.1f} "
                    f"| {errors} | {ours:,.0f} | {raw:.1f} | {ours / raw:,.0f}x |",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
