"""Predictions recorded off the request path, on real gunicorn processes: nothing is written
while a request is answered, a graceful stop writes every buffered row, a hard kill loses at
most the last flush interval, a full buffer is written by the request that fills it; and the
rollback guarantee across two workers, each with its own kept deployments. Plus the COPY text
for awkward values, and the embedded default's SQLite writer."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import subprocess
import sys
import threading
import time

import pytest
from django.utils import timezone

from edumlops.deployments import recorder, rollout, services, tokens
from edumlops.deployments.models import Deployment, Prediction
from tests.conftest import ROOT, clean_env, run_manage
from tests.deployments.conftest import rows_for
from tests.faults import WebServer, wait_for

pytestmark = pytest.mark.services


class Gunicorn(WebServer):
    """gunicorn with `workers` workers of four threads; its access log names the worker (pid)
    that answered each request."""

    def __init__(self, env: dict[str, str], log, workers: int) -> None:
        super().__init__(env, log)
        self.workers = workers

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "edumlops.wsgi:application",
            "-w", str(self.workers), "--threads", "4", "-b", f"127.0.0.1:{self.port}",
            "--log-level", "warning", "--access-logfile", "-",
            "--access-logformat", "ANSWERED %(p)s %(m)s %(U)s %(s)s",
        ]  # fmt: skip

    def pids(self, path_part: str, since: int = 0) -> set[str]:
        """The workers that answered requests to a path containing `path_part`."""
        text = self.output()[since:]
        return set(re.findall(rf"ANSWERED <?(\d+)>? \w+ \S*{re.escape(path_part)}\S* 200", text))


def predict(port: int, school: int, key: str, rows: list[dict]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/api/schools/{school}/predict/",
            json.dumps({"rows": rows}),
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def in_parallel(count: int, call) -> list:
    out: list = [None] * count
    threads = [
        threading.Thread(target=lambda i=i: out.__setitem__(i, call(i))) for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.fixture
def serve(fault_env, tmp_path):
    started: list[Gunicorn] = []

    def start(workers: int = 2, **env: str) -> Gunicorn:
        server = Gunicorn(
            {**fault_env, "EDUMLOPS_THROTTLE_PREDICT": "off", **env},
            tmp_path / f"web-{len(started)}.log",
            workers,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def deployed(two_models, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    return v1, v2


@pytest.fixture
def key(district, staff):
    return tokens.create(district, "SIS", staff)[1]


@pytest.mark.slow
def test_a_graceful_stop_writes_every_buffered_prediction(serve, deployed, school_a, key):
    web = serve(workers=2, EDUMLOPS_PREDICTION_FLUSH_MS="600000")  # no timer flush in the test
    rows = rows_for(3)
    answers = in_parallel(20, lambda i: predict(web.port, school_a.pk, key, rows))
    assert {status for status, _ in answers} == {200}, web.output()
    assert Prediction.objects.count() == 0  # answered; nothing written on the request path
    web.stop()  # SIGTERM, as docker or an operator stops it
    assert Prediction.objects.count() == 60, web.output()
    stored = sorted(Prediction.objects.values_list("probability", flat=True))
    sent = sorted(a["probability"] for _, body in answers for a in body["predictions"])
    assert stored == sent


@pytest.mark.slow
def test_a_hard_kill_loses_at_most_the_last_flush_interval(serve, deployed, school_a, key):
    web = serve(workers=2, EDUMLOPS_PREDICTION_FLUSH_MS="200")
    answered: list[float] = []
    stop = threading.Event()
    row = rows_for(1)

    def client() -> None:
        while not stop.is_set():
            try:
                status, _ = predict(web.port, school_a.pk, key, row)
            except OSError:
                return
            if status == 200:
                answered.append(time.time())

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(answered) >= 150, 60, "150 answers")
    killed_at = time.time()
    web.kill()  # SIGKILL to the master and both workers: no exit handler runs
    stop.set()
    for t in threads:
        t.join()
    stored = Prediction.objects.count()
    # docs/serving.md: at most the last PREDICTION_FLUSH_MS (+ a write in progress) is lost;
    # 1 s here is the 200 ms interval with room for a loaded machine
    older = sum(1 for t in answered if t < killed_at - 1.0)
    assert older <= stored <= len(answered) + 2  # + requests answered as the kill landed


@pytest.mark.slow
def test_a_full_buffer_is_written_by_the_request_that_fills_it(serve, deployed, school_a, key):
    web = serve(
        workers=1, EDUMLOPS_PREDICTION_FLUSH_MS="600000", EDUMLOPS_PREDICTION_BUFFER_ROWS="20"
    )
    counts = []
    for _ in range(5):
        assert predict(web.port, school_a.pk, key, rows_for(5))[0] == 200
        counts.append(Prediction.objects.count())
    assert counts == [0, 0, 0, 20, 20]
    web.stop()
    assert Prediction.objects.count() == 25


@pytest.mark.slow
def test_a_rollback_reaches_both_workers_before_it_returns(serve, deployed, school_a, staff, key):
    v1, v2 = deployed
    web = serve(workers=2)
    current = services.roll_out(v2, scope="district", user=staff)
    row = rows_for(1)

    def versions(n: int) -> set[str]:
        answers = in_parallel(n, lambda i: predict(web.port, school_a.pk, key, row))
        assert {status for status, _ in answers} == {200}, answers
        return {body["predictions"][0]["model"]["version"] for _, body in answers}

    # both workers serve (and keep) version 2
    for _ in range(10):
        assert versions(8) == {v2.version}
        if len(web.pids("/predict/")) == 2:
            break
    assert len(web.pids("/predict/")) == 2, web.output()

    mark = len(web.output())
    rollout.rollback(current, user=staff, reason="bad week")  # returns after its commit
    seen: set[str] = set()
    for _ in range(10):  # every request after it, in whichever worker, answers with version 1
        seen |= versions(8)
        if len(web.pids("/predict/", since=mark)) == 2:
            break
    assert seen == {v1.version}
    assert len(web.pids("/predict/", since=mark)) == 2, web.output()
    answered = Deployment.objects.get(status=Deployment.Status.ACTIVE, scope="district")
    assert answered.model_version_id == v1.pk

    # a revoked token: refused by both workers on the next request
    token = tokens.IntegrationToken.objects.get(prefix=key[:12])
    tokens.revoke(token, staff)
    refused = in_parallel(8, lambda i: predict(web.port, school_a.pk, key, row)[0])
    assert set(refused) == {401}


@pytest.mark.django_db
def test_awkward_text_survives_the_copy(deployed, school_a):
    deployment = Deployment.objects.get(status=Deployment.Status.ACTIVE)
    texts = ["back\\slash", "tab\there", "new\nline", 'quote"d', "üñí©ødé ✓", "\\N", ""]
    now = timezone.now()
    recorder.write(
        [
            recorder.Pending(
                school_a.pk,
                deployment.pk,
                deployment.model_version_id,
                {"locality": text, "grade": 9, "gpa": None},
                0.25,
                "low",
                0.01,
                [text] if text else [],
                now - dt.timedelta(seconds=i),
            )
            for i, text in enumerate(texts)
        ]
    )
    stored = Prediction.objects.order_by("-created_at")
    assert [p.features["locality"] for p in stored] == texts
    assert [p.unseen_categories for p in stored] == [[t] if t else [] for t in texts]
    assert stored[0].features == {"locality": texts[0], "grade": 9, "gpa": None}
    assert stored[1].created_at == now - dt.timedelta(seconds=1)


WRITE_ON_SQLITE = """
import datetime as dt, json, django
django.setup()
from django.utils import timezone
from edumlops.deployments import recorder
from edumlops.deployments.models import Prediction
now = timezone.now()
rows = [recorder.Pending(1, 2, 3, {"locality": t, "grade": 9}, 0.5, "medium", 0.1, [t], now)
        for t in ("tab\\there", "quote\\"d", "üñí")]
recorder.write(rows[:1])  # now
recorder.RECORDER.add(rows[1:])  # buffered; written at exit
print(Prediction.objects.count())
"""

READ_ON_SQLITE = """
import json, django
django.setup()
from edumlops.deployments.models import Prediction
print(json.dumps([[p.features["locality"], p.unseen_categories, p.band]
                  for p in Prediction.objects.order_by("id")]))
"""


def test_the_embedded_default_writes_with_sqlite_and_at_exit(tmp_path):
    env = clean_env(EDUMLOPS_VAR_DIR=str(tmp_path), EDUMLOPS_PREDICTION_FLUSH_MS="600000")
    run_manage("migrate", "--noinput", "-v0", env=env, check=True)
    env = {**env, "DJANGO_SETTINGS_MODULE": "edumlops.settings"}
    wrote = subprocess.run(
        [sys.executable, "-c", WRITE_ON_SQLITE], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    assert wrote.stdout.split() == ["1"]  # one written at once, two still buffered
    read = subprocess.run(
        [sys.executable, "-c", READ_ON_SQLITE], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [
        ["tab\there", ["tab\there"], "medium"],
        ['quote"d', ['quote"d'], "medium"],
        ["üñí", ["üñí"], "medium"],
    ]
