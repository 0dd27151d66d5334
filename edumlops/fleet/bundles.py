"""The files of a model version's bundle as edge nodes download them: the server's local copy
(edumlops.registry.bundles) served as stored, listed with each file's size and SHA-256."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from edumlops.ml.bundle_files import BUNDLE_FILES, sha256_file
from edumlops.registry.bundles import BundleUnavailable, bundle_dir, root

__all__ = ["BundleUnavailable", "bundle_dir", "files", "root"]


_digests: dict[tuple[str, int, int, int], str] = {}
_lock = threading.Lock()


def _sha256(path: Path, stat: os.stat_result) -> str:
    """SHA-256 of a file, remembered while its size, mtime and inode stay the same."""
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _lock:
        known = _digests.get(key)
    if known is None:
        known = sha256_file(path)
        with _lock:
            if len(_digests) > 1000:
                _digests.clear()
            _digests[key] = known
    return known


def files(model: Any) -> list[dict[str, Any]]:
    """Name, size and SHA-256 of each file as stored (for the manifest: resume and integrity in
    transit; the agent trusts only the signature and the digests inside manifest.json)."""
    folder = bundle_dir(model)
    out = []
    for name in BUNDLE_FILES:
        path = folder / name
        stat = path.stat()
        out.append({"name": name, "size": stat.st_size, "sha256": _sha256(path, stat)})
    return out
