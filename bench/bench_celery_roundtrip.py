"""Celery round trip: the project's app (Django settings, acks_late, JSON, result backend) against
the anchor of FACTS.md — a bare Celery app with a trivial task on the same local Redis, `-P solo` —
and the embedded filesystem transport that `make run` uses.

Prints one table: p50 and p99 of N sequential round trips and a chain of 10, with ratios to the
anchor. Results are awaited with `get(interval=0.01)`: Redis answers by pub/sub either way, the
file result backend is polled (0.5 s by default). Needs Redis on REDIS_URL (default redis://127.0.0.1:6379/14).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
N = int(os.environ.get("BENCH_N", "200"))

ANCHOR_APP = textwrap.dedent(
    f"""
    from celery import Celery
    app = Celery("anchor", broker={REDIS!r}, backend={REDIS!r})

    @app.task(name="anchor.ping")
    def ping(x):
        return x
    """
)

MEASURE = textwrap.dedent(
    """
    import json, statistics, sys, time
    from celery import chain
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "anchor":
        from anchor_app import ping
    else:
        import django
        django.setup()
        from edumlops.core.tasks import ping
    ping.delay("warm").get(timeout=60, interval=0.01)
    times = []
    for i in range(n):
        t = time.perf_counter()
        ping.delay(str(i)).get(timeout=60, interval=0.01)
        times.append(time.perf_counter() - t)
    chains = []
    for _ in range(10):
        t = time.perf_counter()
        chain(ping.si("c") for _ in range(10)).apply_async().get(timeout=60, interval=0.01)
        chains.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({
        "p50": statistics.median(times) * 1e3,
        "p99": times[int(0.99 * (len(times) - 1))] * 1e3,
        "chain10": statistics.median(chains) * 1e3,
    }))
    """
)


def _env(**extra: str) -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def _measure(mode: str, worker_cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    worker = subprocess.Popen(
        worker_cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, mode, str(N)],
            cwd=cwd,
            env={**env, "PYTHONPATH": f"{cwd}:{ROOT}"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise SystemExit(f"bench: {mode} failed:\n{out.stderr}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    return json.loads(out.stdout)


def main() -> None:
    celery = [sys.executable, "-m", "celery"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "anchor_app.py").write_text(ANCHOR_APP)
        anchor = _measure(
            "anchor",
            [*celery, "-A", "anchor_app", "worker", "-P", "solo", "-l", "warning"],
            _env(PYTHONPATH=str(tmp_path)),
            tmp_path,
        )
        worker = [
            *celery,
            "-A",
            "edumlops",
            "worker",
            "-P",
            "solo",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
        ]
        embedded_env = _env(
            EDUMLOPS_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="edumlops.settings"
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=embedded_env, check=True
        )
        ours_redis = _measure("ours", worker, {**embedded_env, "REDIS_URL": REDIS}, ROOT)
        ours_embedded = _measure("ours", worker, embedded_env, ROOT)

    print(f"Celery round trip, trivial task, -P solo, {N} sequential calls (median of 10 chains)")
    print()
    print("| case | p50 ms | p99 ms | chain of 10 ms | p50 / anchor |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [
        ("anchor: bare Celery app, local Redis", anchor),
        ("edumlops app, local Redis", ours_redis),
        ("edumlops app, embedded filesystem transport", ours_embedded),
    ]
    for label, r in rows:
        ratio = r["p50"] / anchor["p50"]
        print(f"| {label} | {r['p50']:.2f} | {r['p99']:.2f} | {r['chain10']:.1f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
