"""Run the web server, a Celery worker, celery beat and Flower's SuperLink in the foreground.

Each process's output is prefixed with its name. Ctrl-C (or SIGTERM) stops all three; if one of
them dies, the others are stopped too and the exit status says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.management.base import BaseCommand

from edumlops.site.management.commands.seed_demo import DEMO_PASSWORD_DEFAULT, USERS


def _write(out: IO[str], lock: threading.Lock, text: str) -> None:
    """Write a line; a closed terminal or pipe (e.g. `| tee` killed by Ctrl-C) must not stop us
    from shutting the three processes down."""
    with lock:
        try:
            out.write(text + "\n")
            out.flush()
        except (OSError, ValueError):
            pass


def _pump(name: str, stream: IO[bytes], out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):  # keep draining even when `out` is gone
        _write(out, lock, f"{name:>6} | {raw.decode(errors='replace').rstrip()}")


class Command(BaseCommand):
    help = (
        "Start the web server, a Celery worker, celery beat and Flower's SuperLink; stop them all "
        "on Ctrl-C."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes.")

    def handle(
        self, *args: object, host: str, port: int, concurrency: int, **options: object
    ) -> None:
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "edumlops"]
        commands = {
            "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            "worker": [
                *celery,
                "worker",
                "-l",
                "info",
                "-c",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
            ],
            "beat": [*celery, "beat", "-l", "info", "--pidfile="],
        }
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        envs: dict[str, dict[str, str]] = {}
        if settings.FLOWER_SUPERLINK_START:
            # Flower's SuperLink: the school servers' SuperNodes connect to it and the Train
            # across schools block submits runs to it (one port serves both)
            from edumlops.ml import federated_processes as flower

            flower_host, _, flower_port = settings.FLOWER_SUPERLINK.rpartition(":")
            commands["flower"] = flower.superlink_command(
                host=flower_host or "127.0.0.1", port=int(flower_port)
            )
            envs["flower"] = flower.flower_env(Path(settings.VAR_DIR) / "flwr", base=env)
        lock = threading.Lock()
        out = sys.stdout
        stopping = threading.Event()

        def _stop(signum: int, _frame: object) -> None:
            stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)

        procs: dict[str, subprocess.Popen[bytes]] = {}
        failed: str | None = None
        try:
            for name, cmd in commands.items():
                procs[name] = subprocess.Popen(
                    cmd,
                    cwd=settings.BASE_DIR,
                    env=envs.get(name, env),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                )
                threading.Thread(
                    target=_pump, args=(name, procs[name].stdout, out, lock), daemon=True
                ).start()

            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
            announced = False
            while not stopping.is_set():
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        failed = f"{name} exited with status {proc.returncode}"
                        stopping.set()
                        break
                if not announced and not stopping.is_set() and _answers(url):
                    announced = True
                    self._announce(url, out, lock)
                stopping.wait(0.5)
        finally:
            suffix = f" ({failed})" if failed else ""
            names = list(commands)
            _write(out, lock, f"Stopping {', '.join(names[:-1])} and {names[-1]}…{suffix}")
            _shut_down(procs)
            _write(out, lock, "Stopped.")
        if failed:
            sys.exit(1)

    def _announce(self, url: str, out: IO[str], lock: threading.Lock) -> None:
        password = os.environ.get("DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        lines = ["", self.style.SUCCESS(f"EduMLOps is running at {url}")]
        lines.append("Demo logins (username / password):")
        for username, _full, role, school, _su in USERS:
            scope = f"school {school}" if school else "district"
            if role == role.ADMIN:
                scope = "all districts"
            lines.append(f"  {username:<6} / {password}   {role.label} ({scope})")
        lines.append("Press Ctrl-C to stop the web server, the worker and beat.\n")
        _write(out, lock, "\n".join(lines))


def _shut_down(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (celery's warm shutdown; the web server gets SIGINT, Ctrl-C, on which it
    exits through Python's exit handlers and so writes the predictions it still buffers), then
    wait up to 15 s in all before killing."""
    for name, proc in procs.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if name == "web" else signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "login/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
