"""The agent's files in its cache folder: node.json (the registration, with the district's public
key pinned), telemetry.key (the key of the telemetry queue) and state.json (what it serves and
what it learnt from the server). Each is written atomically (a temporary file, fsync,
os.replace), the first two readable by the owner only."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edumlops.edge")

DEFAULT_CACHE = "/var/lib/edumlops-edge"
NODE_FILE = "node.json"
KEY_FILE = "telemetry.key"
STATE_FILE = "state.json"
PROTOCOL = 1
FLUSH_SECONDS = 0.1  # telemetry is written this long after the first unsaved request


class ConfigError(Exception):
    """The cache folder holds no registration, or a file in it cannot be read."""


def default_cache() -> Path:
    return Path(os.environ.get("EDUMLOPS_EDGE_CACHE") or DEFAULT_CACHE)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def make_cache(cache: Path) -> Path:
    cache = Path(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the cache folder {cache} ({exc.strerror}): choose another with "
            "--cache or $EDUMLOPS_EDGE_CACHE, or create it for this user."
        ) from None
    return cache


# --- node.json ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeConfig:
    """Who this node is, where its server is, and the only key its bundles may be signed with."""

    server: str
    token: str
    node_id: int
    node_name: str
    school_id: int
    school_code: str
    school_name: str
    district_id: int
    district_name: str
    public_key_pem: str
    signing_key_id: str
    poll_seconds: int = 60
    registered_at: str = ""

    @classmethod
    def from_hello(cls, server: str, token: str, hello: dict[str, Any]) -> NodeConfig:
        """From the server's answer to GET /api/edge/hello/; ValueError names what is missing."""
        try:
            node, school, district = hello["node"], hello["school"], hello["district"]
            return cls(
                server=server.rstrip("/"),
                token=token,
                node_id=int(node["id"]),
                node_name=str(node["name"]),
                school_id=int(school["id"]),
                school_code=str(school.get("code", "")),
                school_name=str(school.get("name", "")),
                district_id=int(district["id"]),
                district_name=str(district.get("name", "")),
                public_key_pem=str(hello["public_key_pem"]),
                signing_key_id=str(hello.get("signing_key_id", "")),
                poll_seconds=max(1, int(hello.get("poll_seconds") or 60)),
                registered_at=now_iso(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the hello answer lacks or mistypes {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "token": self.token,
            "node": {"id": self.node_id, "name": self.node_name},
            "school": {"id": self.school_id, "code": self.school_code, "name": self.school_name},
            "district": {"id": self.district_id, "name": self.district_name},
            "public_key_pem": self.public_key_pem,
            "signing_key_id": self.signing_key_id,
            "poll_seconds": self.poll_seconds,
            "registered_at": self.registered_at,
        }

    def save(self, cache: Path) -> None:
        body = json.dumps(self.to_dict(), indent=2) + "\n"
        write_atomic(make_cache(cache) / NODE_FILE, body.encode(), 0o600)

    @classmethod
    def load(cls, cache: Path) -> NodeConfig:
        path = Path(cache) / NODE_FILE
        if not path.is_file():
            raise ConfigError(
                f"{path} does not exist: register this node first with `edumlops-edge register "
                f"--server URL --token TOKEN --cache {cache}`."
            )
        try:
            data = json.loads(path.read_text())
            return cls(
                server=data["server"],
                token=data["token"],
                node_id=int(data["node"]["id"]),
                node_name=data["node"]["name"],
                school_id=int(data["school"]["id"]),
                school_code=data["school"].get("code", ""),
                school_name=data["school"].get("name", ""),
                district_id=int(data["district"]["id"]),
                district_name=data["district"].get("name", ""),
                public_key_pem=data["public_key_pem"],
                signing_key_id=data.get("signing_key_id", ""),
                poll_seconds=max(1, int(data.get("poll_seconds") or 60)),
                registered_at=data.get("registered_at", ""),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} cannot be read ({exc!r}): register the node again with "
                "`edumlops-edge register`."
            ) from None


# --- telemetry.key -----------------------------------------------------------------------------
def telemetry_key(cache: Path) -> bytes:
    """The Fernet key that encrypts the telemetry queue, made on first use (mode 0600)."""
    from cryptography.fernet import Fernet

    path = Path(cache) / KEY_FILE
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails when another process made the key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
    return path.read_bytes().strip()


# --- state.json --------------------------------------------------------------------------------
MAX_EVENTS = 200


@dataclass
class State:
    """What the agent serves and what it last heard from the server.

    `good` lists the verified versions that loaded, most recently activated first (the active
    one, then the ones before it); `rejected` maps a version to why it was refused, when, and
    under which manifest ETag; `events` wait here until a report carrying them succeeds."""

    active: int | None = None
    good: list[int] = field(default_factory=list)
    etag: str | None = None
    manifest: dict[str, Any] | None = None
    last_sync: str | None = None
    last_contact: str | None = None
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, int | None] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        return cls(
            active=data.get("active"),
            good=[int(v) for v in data.get("good") or []],
            etag=data.get("etag"),
            manifest=data.get("manifest"),
            last_sync=data.get("last_sync"),
            last_contact=data.get("last_contact"),
            rejected=dict(data.get("rejected") or {}),
            deployments=dict(data.get("deployments") or {}),
            events=list(data.get("events") or []),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StateFile:
    """state.json, replaced atomically on every save."""

    def __init__(self, cache: Path) -> None:
        self.path = Path(cache) / STATE_FILE

    def load(self) -> State:
        if not self.path.exists():
            return State()
        try:
            return State.from_dict(json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            aside = self.path.with_name(f"{STATE_FILE}.unreadable")
            os.replace(self.path, aside)
            log.error(
                "%s cannot be read (%s): moved to %s; starting from the bundles in the cache",
                self.path,
                exc,
                aside,
            )
            return State()

    def save(self, state: State) -> None:
        body = json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n"
        write_atomic(self.path, body.encode(), 0o600)
