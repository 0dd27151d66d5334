"""Engine overhead: a chain of 20 no-op blocks through the workflow engine against a raw Celery
chain of 20 trivial tasks, on the same local Redis, each with one `-P solo` worker, in one run.

The engine's run is timed from start_run() to the run's final status in the database (each step
claims its row and loads its inputs in one UPDATE … RETURNING, records logs and outputs, and
sends the next step in the transaction that ends it; the last step settles the run). The raw
chain is a bare Celery app (no Django) timed from apply_async() to .get().

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/edumlops_bench,
created and migrated here) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/edumlops_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RUNS = int(os.environ.get("BENCH_RUNS", "10"))
LENGTH = 20

ANCHOR_APP = textwrap.dedent(
    f"""
    from celery import Celery
    app = Celery("anchor", broker={REDIS!r}, backend={REDIS!r})

    @app.task(name="anchor.noop")
    def noop():
        return None
    """
)


def _env(**extra: str) -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def _worker(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            *cmd,
            "worker",
            "-P",
            "solo",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def raw_chain_ms(tmp: Path) -> list[float]:
    (tmp / "anchor_app.py").write_text(ANCHOR_APP)
    env = _env(PYTHONPATH=str(tmp))
    worker = _worker(["-A", "anchor_app"], env, tmp)
    code = textwrap.dedent(
        f"""
        import json, time
        from celery import chain
        from anchor_app import noop
        noop.delay().get(timeout=60)
        out = []
        for _ in range({RUNS}):
            t = time.perf_counter()
            chain(noop.si() for _ in range({LENGTH})).apply_async().get(timeout=60)
            out.append((time.perf_counter() - t) * 1e3)
        print(json.dumps(out))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    finally:
        _stop(worker)
    import json

    return json.loads(done.stdout)


def fresh_database(env: dict[str, str]) -> None:
    """Create and migrate the bench database, then set Django up on it in this process."""
    import psycopg

    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "edumlops.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def engine_ms(tmp: Path) -> list[float]:
    env = _env(DATABASE_URL=DB_URL, REDIS_URL=REDIS, EDUMLOPS_VAR_DIR=str(tmp / "var"))
    fresh_database(env)
    from django.contrib.auth import get_user_model

    from edumlops.schools.models import District, Membership
    from workflows import engine
    from workflows.models import Run, Workflow

    district = District.objects.create(name="Bench", slug="bench")
    user = get_user_model().objects.create_user("bench")
    Membership.objects.create(user=user, role="admin")
    nodes = [{"id": "start", "kind": "manual_trigger"}] + [
        {"id": f"s{i}", "kind": "wait", "params": {"seconds": 0}} for i in range(LENGTH)
    ]
    edges = [{"source": "start", "source_port": "start", "target": "s0", "target_port": "input"}]
    edges += [
        {"source": f"s{i}", "source_port": "done", "target": f"s{i + 1}", "target_port": "input"}
        for i in range(LENGTH - 1)
    ]
    workflow = Workflow.objects.create(district=district, name="chain", owner=user)
    workflow.save_version({"nodes": nodes, "edges": edges}, "bench", user)

    worker = _worker(["-A", "edumlops"], env, ROOT)
    times = []
    try:
        for i in range(RUNS + 1):
            t = time.perf_counter()
            run = engine.start_run(workflow, user=user)
            while Run.objects.filter(pk=run.pk, status__in=["queued", "running"]).exists():
                time.sleep(0.005)  # a gentle poll: the worker and PostgreSQL share 2 cores
            elapsed = (time.perf_counter() - t) * 1e3
            status = Run.objects.get(pk=run.pk).status
            assert status == "succeeded", status
            if i:  # the first run warms the worker up
                times.append(elapsed)
    finally:
        _stop(worker)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_chain_ms(Path(tmp))
        ours = engine_ms(Path(tmp))
    raw_ms, ours_ms = statistics.median(raw), statistics.median(ours)
    print(
        f"A chain of {LENGTH} no-op steps, one -P solo worker, local Redis; median of {RUNS} runs"
    )
    print()
    print("| case | median ms | per step ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| anchor: raw Celery chain of {LENGTH} trivial tasks | {raw_ms:.1f} | "
        f"{raw_ms / LENGTH:.2f} | 1.00× |"
    )
    print(
        f"| edumlops engine: trigger + {LENGTH} no-op blocks (Wait 0 s) | {ours_ms:.1f} | "
        f"{ours_ms / (LENGTH + 1):.2f} | {ours_ms / raw_ms:.2f}× |"
    )


if __name__ == "__main__":
    main()
