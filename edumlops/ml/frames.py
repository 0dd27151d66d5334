"""Rows stored once, read by their content hash.

A step that derives rows (the Split block's training and held-out parts) writes them here as a
Parquet file named by the SHA-256 of its bytes; later steps receive only that hash and read the
file back, checking the bytes still hash to it. The caller names the folder (no Django here).

Writing goes to a temporary file in the same folder, renamed into place once complete, so a
reader never sees half a file. Reading raises FrameError when the file is missing or does not
match its hash: the caller rebuilds the rows from their source. Writing raises FrameError when
the rows cannot be stored: the caller goes on without (a later reader rebuilds them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FrameError(Exception):
    """The stored rows cannot be used (missing, changed, unreadable): rebuild them."""


def path_for(folder: Path, sha256: str) -> Path:
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise FrameError(f"{sha256!r} is not the SHA-256 of stored rows")
    return Path(folder) / f"{sha256}.parquet"


def write(frame: pd.DataFrame, folder: Path) -> str:
    """Store the rows (without their index) and return their hash; FrameError when they cannot
    be stored. The same rows written by the same library versions give the same bytes, so
    writing them again is harmless."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".frame-", suffix=".tmp")
    except OSError as exc:
        raise FrameError(f"the rows cannot be stored in {folder} ({exc})") from exc
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
        sha256 = _sha256_of(Path(tmp))
        os.replace(tmp, path_for(folder, sha256))
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise FrameError(f"the rows cannot be stored in {folder} ({exc})") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return sha256


def read(folder: Path, sha256: str) -> pd.DataFrame:
    """The rows stored under `sha256`; FrameError when they are missing or do not match it."""
    path = path_for(folder, sha256)
    short = f"{sha256[:12]}…"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FrameError(f"the stored rows {short} are missing") from None
    except OSError as exc:
        raise FrameError(f"the stored rows {short} cannot be read ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FrameError(f"the stored rows {short} do not match their hash")
    with contextlib.suppress(OSError):
        os.utime(path)  # last used now: prune() keeps what runs still read
    try:
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FrameError(f"the stored rows {short} cannot be read ({exc})") from exc


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prune(folder: Path, older_than_seconds: float, now: float | None = None) -> int:
    """Delete stored frames not read or written for `older_than_seconds`; the number deleted.
    Safe at any time: a step whose frame is gone rebuilds it from the dataset version."""
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - older_than_seconds
    deleted = 0
    for path in folder.glob("*.parquet"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue  # another process pruned it
    return deleted
