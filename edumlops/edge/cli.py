"""`edumlops-edge register | run | status`: set a school server up, run it, look at it."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edumlops.edge import __version__
from edumlops.edge.config import (
    FLUSH_SECONDS,
    NODE_FILE,
    PROTOCOL,
    ConfigError,
    NodeConfig,
    StateFile,
    default_cache,
    make_cache,
)

log = logging.getLogger("edumlops.edge")


class Failure(Exception):
    """A problem to tell the operator in one line, then exit with status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (Failure, ConfigError) as exc:
        print(f"edumlops-edge: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edumlops-edge",
        description="Serve a district's signed EduMLOps models on a school's own server.",
    )
    parser.add_argument("--version", action="version", version=f"edumlops-edge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    cache_help = "the cache folder (default: $EDUMLOPS_EDGE_CACHE or /var/lib/edumlops-edge)"

    register = commands.add_parser(
        "register", help="register this node with its district server (once)"
    )
    register.add_argument("--server", required=True, help="the district server's URL")
    register.add_argument("--token", required=True, help="the node token from the Edge page")
    register.add_argument("--cache", type=Path, default=None, help=cache_help)
    register.set_defaults(func=cmd_register)

    run = commands.add_parser("run", help="serve /predict locally and sync with the server")
    run.add_argument("--cache", type=Path, default=None, help=cache_help)
    run.add_argument("--port", type=int, default=8080, help="the local port (default 8080)")
    run.add_argument("--host", default="127.0.0.1", help="the address (default 127.0.0.1)")
    run.add_argument(
        "--poll", type=float, default=None, help="seconds between syncs (default: the server's)"
    )
    run.add_argument(
        "--max-kbps",
        type=float,
        default=None,
        help="cap bundle downloads at this many kilobytes per second (slow links)",
    )
    run.add_argument(
        "--flush-seconds",
        type=float,
        default=None,
        help="how long a prediction's telemetry may wait in memory before it is written "
        f"(default {FLUSH_SECONDS:g}): about what a hard crash can lose; SIGTERM loses nothing",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG also logs every request (default INFO)",
    )
    run.set_defaults(func=cmd_run)

    status = commands.add_parser("status", help="print what this node serves and holds")
    status.add_argument("--cache", type=Path, default=None, help=cache_help)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    federated = commands.add_parser(
        "federated",
        help="take part in the district's federated training (a Flower SuperNode; needs the "
        "`federated` extra)",
    )
    federated.add_argument(
        "--superlink", required=True, help="the district's SuperLink as HOST:PORT"
    )
    federated.add_argument(
        "--records", required=True, type=Path, help="this school's records file (CSV)"
    )
    federated.add_argument("--school", required=True, help="this school's code")
    federated.add_argument(
        "--port", type=int, default=9094, help="the SuperNode's local ClientApp port (9094)"
    )
    federated.set_defaults(func=cmd_federated)
    return parser


# --- federated ---------------------------------------------------------------------------------
def cmd_federated(args: argparse.Namespace) -> int:
    """Replace this process with a Flower SuperNode whose ClientApp trains on --records."""
    import importlib.util

    from edumlops.ml.federated_processes import flower_env, supernode_command

    if importlib.util.find_spec("flwr") is None:
        raise Failure(
            'federated training needs Flower: pip install "edumlops[federated]" on this server.'
        )
    records = args.records.expanduser().resolve()
    if not records.is_file():
        raise Failure(f"the records file {records} does not exist: give the path of a CSV.")
    if not args.school.strip():
        raise Failure("--school needs this school's code, as the district lists it.")
    command = supernode_command(
        superlink=args.superlink, school=args.school.strip(), records=records, port=args.port
    )
    os.execve(command[0], command, flower_env())


# --- register ----------------------------------------------------------------------------------
def cmd_register(args: argparse.Namespace) -> int:
    from edumlops.edge.client import Client, Unreachable
    from edumlops.ml.signing import SignatureError, key_id, load_public_key

    cache = args.cache or default_cache()
    server = args.server.strip().rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise Failure(
            f"--server {args.server!r} is not a URL: give e.g. https://edumlops.example.org"
        )
    client = Client(server, args.token.strip())
    try:
        response = client.get_json("/api/edge/hello/")
    except Unreachable as exc:
        raise Failure(
            f"{exc}. Check the URL, the network and that the server is running."
        ) from None
    if response.status in (401, 403):
        raise Failure(
            f"{server} refused the token ({response.status}: {response.detail()}): it is wrong "
            "or was revoked. Ask an admin for a new one on the Edge page (/edge/)."
        )
    try:
        hello = response.json()
    except ValueError:
        hello = None
    if response.status != 200 or not isinstance(hello, dict) or "protocol" not in hello:
        raise Failure(
            f"{server} does not look like an EduMLOps server: GET /api/edge/hello/ answered "
            f"HTTP {response.status} ({response.detail()[:120]}). Check the URL."
        )
    if hello.get("protocol") != PROTOCOL:
        raise Failure(
            f"{server} speaks edge protocol {hello.get('protocol')}; this agent "
            f"({__version__}) speaks {PROTOCOL}: install the matching edumlops-edge."
        )
    try:
        node = NodeConfig.from_hello(server, args.token.strip(), hello)
        key = load_public_key(node.public_key_pem)
    except (ValueError, SignatureError) as exc:
        raise Failure(f"{server} gave an unusable answer to hello: {exc}") from None
    if node.signing_key_id and node.signing_key_id != key_id(key):
        raise Failure(
            f"The public key from {server} has id {key_id(key)}, not the {node.signing_key_id} "
            "it announced: not registering."
        )
    previous = _previous(cache)
    node.save(cache)
    print(
        f"Registered {node.node_name} for {node.school_name or node.school_code} "
        f"({node.district_name}); signing key {key_id(key)} pinned in {cache / NODE_FILE}."
    )
    if previous and previous.public_key_pem.strip() != node.public_key_pem.strip():
        print("Note: the pinned key changed; cached bundles signed with the old key will not load.")
    print(f"Next: edumlops-edge run --cache {cache} --port 8080")
    return 0


def _previous(cache: Path) -> NodeConfig | None:
    try:
        return NodeConfig.load(cache)
    except ConfigError:
        return None


# --- run ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    """One agent per cache folder."""
    path = make_cache(cache) / "agent.lock"
    fh = path.open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        other = fh.read().strip() or "another process"
        fh.close()
        raise Failure(f"An agent (pid {other}) already runs on {cache}: stop it first.") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    try:
        yield
    finally:
        fh.close()


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cache = args.cache or default_cache()
    if args.poll is not None and args.poll <= 0:
        raise Failure("--poll must be more than 0 seconds.")
    if args.max_kbps is not None and args.max_kbps <= 0:
        raise Failure("--max-kbps must be more than 0.")
    if args.flush_seconds is not None and args.flush_seconds <= 0:
        raise Failure("--flush-seconds must be more than 0.")
    NodeConfig.load(cache)  # registered? (says how to register, before anything is created)
    with _exclusive(cache):
        return _run(args, cache)


# A thread that wants the GIL gets it after this long at most (Python's default: 5 ms): a
# request does not wait behind the sync, report, upload and flush threads' Python code.
SWITCH_INTERVAL = 0.0005


def _run(args: argparse.Namespace, cache: Path) -> int:
    from edumlops.edge.agent import Agent
    from edumlops.edge.server import make_server

    sys.setswitchinterval(SWITCH_INTERVAL)
    agent = Agent(
        cache,
        poll_seconds=args.poll,
        max_kbps=args.max_kbps,
        flush_seconds=args.flush_seconds or FLUSH_SECONDS,
    )
    model = agent.start_model()
    try:
        httpd = make_server(agent, args.host, args.port)
    except OSError as exc:
        raise Failure(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}.") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="edge-http", daemon=True
    )
    serving.start()
    host, port = httpd.server_address[:2]
    what = f"model {model.serving.name} v{model.serving.version}" if model else "no model yet"
    print(f"serving on http://{host}:{port} ({what})", flush=True)
    log.info(
        "node %s of %s; server %s; cache %s",
        agent.node.node_name,
        agent.node.school_name,
        agent.node.server,
        cache,
    )
    agent.start()
    while not stop.wait(1.0):
        pass
    log.info("stopping: finishing the requests in flight")
    httpd.shutdown()
    if not httpd.drain(30):
        log.warning("requests still in flight after 30 s; stopping anyway")
    httpd.server_close()
    agent.stop()
    log.info("stopped")
    return 0


# --- status ------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    cache = args.cache or default_cache()
    node = NodeConfig.load(cache)
    state = StateFile(cache).load()
    bundles = cache / "bundles"
    cached = sorted(
        (int(p.name) for p in bundles.iterdir() if p.name.isdigit()) if bundles.is_dir() else [],
        reverse=True,
    )
    downloads = [str(p.relative_to(cache)) for p in sorted((cache / "downloads").glob("*/*"))]
    info: dict[str, Any] = {
        "node": node.node_name,
        "school": f"{node.school_name} ({node.school_id})",
        "district": node.district_name,
        "server": node.server,
        "signing_key_id": node.signing_key_id,
        "active_version": state.active,
        "good_versions": state.good,
        "cached_versions": cached,
        "desired_version": ((state.manifest or {}).get("desired") or {}).get("model_version"),
        "last_sync": state.last_sync,
        "last_contact": state.last_contact,
        "etag": state.etag,
        "rejected": state.rejected,
        "downloads": downloads,
        "events_waiting": len(state.events),
        "telemetry": _telemetry_counts(cache),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name, value in info.items():
        if isinstance(value, dict | list):
            value = json.dumps(value) if value else "none"
        print(f"{name.replace('_', ' '):>16}: {value if value is not None else '-'}")
    return 0


def _telemetry_counts(cache: Path) -> dict[str, int]:
    import sqlite3

    path = cache / "telemetry.db"
    if not path.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            c = conn.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM contributions")
            requests, rows = c.fetchone()
            b = conn.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM batches")
            batches, batch_rows = b.fetchone()
    except sqlite3.Error:
        return {}
    return {
        "waiting_requests": requests,
        "unsent_batches": batches,
        "pending_rows": rows + batch_rows,
    }


if __name__ == "__main__":
    raise SystemExit(main())
