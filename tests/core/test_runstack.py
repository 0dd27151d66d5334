"""Smoke test of the embedded default, as `make run` starts it: SQLite, the filesystem transport,
web + worker + beat under runstack, the demo seeded, and Ctrl-C stopping all three."""

from __future__ import annotations

import http.cookiejar
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from tests.conftest import ROOT, clean_env, run_manage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"runstack exited early with {proc.returncode}"
        time.sleep(0.3)
    raise AssertionError("timed out")


def _log_in(base: str, username: str, password: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token}
    ).encode()
    request = urllib.request.Request(base + "login/", data=data, headers={"Referer": base})
    return opener.open(request).read().decode()


RUN_DIAMOND = """
import time, django
django.setup()
from django.contrib.auth import get_user_model
from edumlops.schools.models import District
from workflows import engine
from workflows.models import Run, Workflow
admin = get_user_model().objects.get(username="admin")
def n(i, k, **p): return {"id": i, "kind": k, "params": p}
def e(s, sp, t): return {"source": s, "source_port": sp, "target": t, "target_port": "input"}
graph = {"nodes": [n("start", "manual_trigger"), n("l", "wait", seconds=0.5),
                   n("r", "wait", seconds=0.5), n("j", "notify")],
         "edges": [e("start", "start", "l"), e("start", "start", "r"),
                   e("l", "done", "j"), e("r", "done", "j")]}
wf = Workflow.objects.create(district=District.objects.get(slug="riverside"), name="smoke")
wf.save_version(graph, "smoke", admin)
run = engine.start_run(wf, user=admin)
deadline = time.time() + 90
while Run.objects.get(pk=run.pk).status in ("queued", "running") and time.time() < deadline:
    time.sleep(0.2)
print(Run.objects.get(pk=run.pk).status)
print(*(f"{s.node_id}={s.status}" for s in run.steps.exclude(node_id="start")))
"""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True


def test_the_embedded_default_runs_web_worker_and_beat_and_stops_on_ctrl_c(tmp_path):
    flower_port = _free_port()
    env = clean_env(
        EDUMLOPS_VAR_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
        FLOWER_SUPERLINK=f"127.0.0.1:{flower_port}",
    )
    run_manage("migrate", "--noinput", "-v0", env=env, check=True)
    seeded = run_manage("seed_demo", env=env, check=True)
    assert "tom    / edumlops-demo" in seeded.stdout

    port = _free_port()
    log = tmp_path / "runstack.log"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(lambda: f"EduMLOps is running at {base}" in log.read_text(), 90, proc)
        _wait_for(lambda: "celery@" in log.read_text() and "ready." in log.read_text(), 60, proc)
        _wait_for(lambda: "beat: Starting..." in log.read_text(), 60, proc)

        # Flower's SuperLink listens for the school servers' SuperNodes
        _wait_for(lambda: _listening(flower_port), 60, proc)

        page = _log_in(base, "tom", "edumlops-demo")
        assert "Riverside High School" in page and "School dashboard" in page

        sent = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from edumlops.core.tasks import ping; "
                "print(ping.delay('smoke').get(timeout=60))",
            ],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "edumlops.settings"},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert sent.returncode == 0, sent.stderr
        assert "'echo': 'smoke'" in sent.stdout

        ran = subprocess.run(
            [sys.executable, "-c", RUN_DIAMOND],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "edumlops.settings"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr + log.read_text()
        assert ran.stdout.split() == ["succeeded", "l=succeeded", "r=succeeded", "j=succeeded"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output
    assert "Stopping web, worker, beat and flower" in output
    assert output.rstrip().endswith("Stopped.")
    leftovers = subprocess.run(
        ["pgrep", "-f", f"runserver 127.0.0.1:{port}"], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == ""
