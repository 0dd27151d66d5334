"""Our predict endpoint against `mlflow models serve` of the same registered model, and against a
bare endpoint on our own server, all under wrk.

- Ours: `POST /api/schools/{id}/predict/` on gunicorn (2 workers x 4 threads, DEBUG off) with
  PostgreSQL and an integration token: authentication, the throttle (set high enough not to
  refuse), the school's deployment, validation, one ONNX Runtime run, risk bands, linear
  explanations, and every prediction recorded (the bench waits for the last ones to be written
  and checks their count).
- Anchor: `mlflow models serve -w 2` of the same MLflow registry entry (what a district would
  run instead), sent the same rows as `dataframe_records`.
- Bare: our `/healthz` (one `SELECT 1`) on the same gunicorn: the floor of a request there.

Load: Debian's `wrk -t2 -c8` for BENCH_SECONDS (10) per case, in ROUNDS (3) interleaved rounds;
the table shows the median round and the range. wrk shares the 2 cores with the servers.
Goals (issue 19): ours >= 3x mlflow's requests/s at 1 and 100 rows, p99 <= half of mlflow's,
1-row requests/s within 1.5x of the bare endpoint.

Needs PostgreSQL (BENCH_DATABASE_URL, default .../edumlops_bench, made anew here) and wrk.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/edumlops_bench")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = 8

LUA = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = os.getenv("BENCH_METHOD")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "non2xx": %d, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(tmp: Path) -> dict:
    import psycopg

    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
            "EDUMLOPS_CACHE_URL"}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DATABASE_URL=DB_URL,
        EDUMLOPS_VAR_DIR=str(tmp / "var"),
        DEBUG="false",
        # as deployed (docker-compose): Redis holds the shared cache the throttle counts in
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        # a district's SIS scoring a whole school: the throttle runs, but never refuses here
        EDUMLOPS_THROTTLE_PREDICT="100000000/min",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "edumlops.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from edumlops.deployments import services, tokens
    from edumlops.schools.models import District, School
    from tests.deployments.conftest import rows_for
    from tests.edge.conftest import edge_model

    district = District.objects.create(name="Bench", slug="bench")
    school = School.objects.create(
        district=district, code="b1", name="Bench High", size_band="large", enrollment=900,
        locality="urban",
    )  # fmt: skip
    model = edge_model(district, seed=0)  # a bundle as the Export ONNX block writes it
    services.roll_out(model, scope="district", reason="bench")
    _, key = tokens.create(district, "bench", None)
    return {
        "env": env,
        "school": school.pk,
        "key": key,
        "rows": rows_for(100, seed=5),
        "model_uri": f"models:/{model.name}/{model.version}",
        "tracking_uri": settings.MLFLOW_TRACKING_URI,
        "features": len(model.features["numeric"]) + len(model.features["categorical"]),
    }


def wait_http(port: int, path: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start")


def start(cmd: list[str], env: dict, port: int, path: str, what: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    wait_http(port, path, proc, what)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(url: str, method: str, body: bytes, auth: str, tmp: Path, seconds: int = SECONDS) -> dict:
    script, data = tmp / "bench.lua", tmp / "body.json"
    script.write_text(LUA)
    data.write_bytes(body)
    env = {**os.environ, "BENCH_BODY": str(data), "BENCH_METHOD": method, "BENCH_AUTH": auth}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
         url],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def cpu_seconds(server: subprocess.Popen) -> float:
    """CPU time (user + system) the server's process tree has used so far: the master and its
    workers (mlflow's uvicorn workers are grandchildren)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [server.pid]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def profile(server: subprocess.Popen, name: str) -> subprocess.Popen | None:
    """With BENCH_PROFILE=<folder>: py-spy samples the server's workers during the case and
    writes collapsed stacks (one file per case; `top_frames` summarises them)."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(server.pid), "--subprocesses", "--duration",
         str(SECONDS), "--rate", "200", "--format", "raw", "--nonblocking",
         "--output", str(Path(folder) / f"{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def recorded(env: dict) -> int:
    import psycopg

    with psycopg.connect(DB_URL.replace("postgres://", "postgresql://")) as c:
        return c.execute("SELECT count(*) FROM deployments_prediction").fetchone()[0]


def median_and_range(results: list[dict], key: str, fmt: str) -> str:
    values = sorted(r[key] for r in results)
    mid = statistics.median(values)
    return f"{format(mid, fmt)} ({format(values[0], fmt)}–{format(values[-1], fmt)})"


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (make bench does)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        s = setup(tmp)
        ours_port, mlflow_port = free_port(), free_port()
        ours = start(
            [sys.executable, "-m", "gunicorn", "edumlops.wsgi", "-w", "2", "--threads", "4",
             "-b", f"127.0.0.1:{ours_port}", "--log-level", "warning"],
            s["env"], ours_port, "/healthz", "gunicorn",
        )  # fmt: skip
        bin_dir = str(Path(sys.executable).parent)  # mlflow runs `uvicorn` from PATH
        mlflow_env = {
            **s["env"],
            "MLFLOW_TRACKING_URI": s["tracking_uri"],
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        cases: dict[str, list[dict]] = {}
        expected_rows = 0
        anchor = None
        try:
            anchor = start(
                [f"{bin_dir}/mlflow", "models", "serve", "-m", s["model_uri"], "-w", "2", "-h",
                 "127.0.0.1", "-p", str(mlflow_port), "--env-manager", "local"],
                mlflow_env, mlflow_port, "/ping", "mlflow models serve",
            )  # fmt: skip
            before = recorded(s["env"])
            for batch in (1, 100):  # warm up every worker of both servers: models load
                rows = s["rows"][:batch]
                r = wrk(f"http://127.0.0.1:{ours_port}/api/schools/{s['school']}/predict/",
                        "POST", json.dumps({"rows": rows}).encode(), f"Bearer {s['key']}", tmp,
                        seconds=3)  # fmt: skip
                assert r["requests"] and not r["non2xx"], r
                expected_rows += r["requests"] * batch
                r = wrk(
                    f"http://127.0.0.1:{mlflow_port}/invocations",
                    "POST",
                    json.dumps({"dataframe_records": rows}).encode(),
                    "",
                    tmp,
                    seconds=3,
                )
                assert r["requests"] and not r["non2xx"], r
            for _ in range(ROUNDS):
                for batch in (1, 100):
                    rows = s["rows"][:batch]
                    ours_body = json.dumps({"rows": rows}).encode()
                    mlflow_body = json.dumps({"dataframe_records": rows}).encode()
                    spy, cpu = profile(ours, f"ours-{batch}"), cpu_seconds(ours)
                    r = wrk(f"http://127.0.0.1:{ours_port}/api/schools/{s['school']}/predict/",
                            "POST", ours_body, f"Bearer {s['key']}", tmp)  # fmt: skip
                    r["cpu_ms"] = 1000 * (cpu_seconds(ours) - cpu) / max(1, r["requests"])
                    if spy is not None:
                        spy.wait()
                    expected_rows += (r["requests"] - r["non2xx"]) * batch
                    cases.setdefault(f"ours {batch}", []).append(r)
                    cpu = cpu_seconds(anchor)
                    r = wrk(f"http://127.0.0.1:{mlflow_port}/invocations", "POST", mlflow_body,
                            "", tmp)  # fmt: skip
                    r["cpu_ms"] = 1000 * (cpu_seconds(anchor) - cpu) / max(1, r["requests"])
                    cases.setdefault(f"mlflow {batch}", []).append(r)
                cpu = cpu_seconds(ours)
                r = wrk(f"http://127.0.0.1:{ours_port}/healthz", "GET", b"", "", tmp)
                r["cpu_ms"] = 1000 * (cpu_seconds(ours) - cpu) / max(1, r["requests"])
                cases.setdefault("bare", []).append(r)
        finally:
            if anchor is not None:
                stop(anchor)
            stop(ours)  # a graceful stop flushes the predictions still buffered
        written = recorded(s["env"]) - before

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in cases[name])

    print(
        f"Logistic regression, {s['features']} features; gunicorn 2 workers x 4 threads on "
        f"PostgreSQL against `mlflow models serve -w 2`; wrk -t2 -c{CONNECTIONS}, {SECONDS} s a "
        f"case, {ROUNDS} rounds: median (range)."
    )
    print()
    print(
        "| case | ours req/s | mlflow req/s | ratio (goal ≥ 3×) | ours p50 ms | ours p99 ms "
        "| mlflow p50 ms | mlflow p99 ms | p99 ratio (goal ≤ 0.5) | bare /healthz req/s "
        "| bare / ours (goal ≤ 1.5) | server CPU ms per request: ours / mlflow / bare "
        "| errors ours / mlflow |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |"
    )
    for batch in (1, 100):
        o, m = f"ours {batch}", f"mlflow {batch}"
        errors_o = sum(r["non2xx"] + r["errors"] for r in cases[o])
        errors_m = sum(r["non2xx"] + r["errors"] for r in cases[m])
        bare = median_and_range(cases["bare"], "rps", ",.0f") if batch == 1 else ""
        bare_ratio = f"{med('bare', 'rps') / med(o, 'rps'):.2f}" if batch == 1 else ""
        print(
            f"| {batch} row{'s' if batch > 1 else ''} per request "
            f"| {median_and_range(cases[o], 'rps', ',.0f')} "
            f"| {median_and_range(cases[m], 'rps', ',.0f')} "
            f"| {med(o, 'rps') / med(m, 'rps'):.1f}× "
            f"| {med(o, 'p50'):.1f} | {median_and_range(cases[o], 'p99', '.1f')} "
            f"| {med(m, 'p50'):.1f} | {median_and_range(cases[m], 'p99', '.1f')} "
            f"| {med(o, 'p99') / med(m, 'p99'):.2f} | {bare} | {bare_ratio} "
            f"| {med(o, 'cpu_ms'):.2f} / {med(m, 'cpu_ms'):.2f}"
            f"{' / ' + format(med('bare', 'cpu_ms'), '.2f') if batch == 1 else ''} "
            f"| {errors_o} / {errors_m} |",
            flush=True,
        )
    print()
    # wrk stops counting when its time is up; the requests in flight then (at most one per
    # connection per run) are still answered and recorded by the server
    in_flight = (ROUNDS + 1) * CONNECTIONS * (1 + 100)  # the warm-up runs too
    verdict = (
        "every answered row is stored"
        if expected_rows <= written <= expected_rows + in_flight
        else f"MISMATCH: {expected_rows - written:+,} rows"
    )
    print(
        f"Predictions recorded after the server's graceful stop: {written:,} rows for "
        f"{expected_rows:,} rows wrk saw answered (+ up to {in_flight:,} in flight when each run "
        f"ended): {verdict}."
    )


if __name__ == "__main__":
    main()
