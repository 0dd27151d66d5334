"""Bundles in the cache: `downloads/<v>/` while they arrive, `bundles/<v>/` once verified.

A new bundle is fetched file by file (each resumed from its `.part`, then checked against the
size and SHA-256 of the server's listing — integrity in transit), verified against the pinned
public key (the signature of manifest.json, then every digest inside it — what the agent
trusts), and only then moved into `bundles/` with one os.replace of its folder. A bundle that
fails is deleted from `downloads/`; nothing half-checked ever sits in `bundles/`."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edumlops.edge.client import Client
from edumlops.edge.config import fsync_dir
from edumlops.ml.bundle_files import BUNDLE_FILES, BundleError, sha256_file, verify_bundle

log = logging.getLogger("edumlops.edge")

KEEP = 3  # the active bundle and the two before it


@dataclass
class Fetched:
    version: int
    manifest: dict[str, Any]
    bytes: int
    seconds: float
    resumed: bool

    def describe(self) -> str:
        size = f"{self.bytes / 1024:.0f} KB" if self.bytes >= 1024 else f"{self.bytes} B"
        how = ", resumed" if self.resumed else ""
        return f"downloaded {size} in {self.seconds:.1f} s{how}, verified"


class BundleStore:
    def __init__(self, cache: Path, public_key: Any) -> None:
        self.cache = Path(cache)
        self.public_key = public_key
        self.bundles = self.cache / "bundles"
        self.downloads = self.cache / "downloads"
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.bundles.glob(".*"), *self.downloads.glob(".*")]:
            _remove_path(leftover)  # a move or a removal cut short by a crash

    def path(self, version: int) -> Path:
        return self.bundles / str(int(version))

    def has(self, version: int) -> bool:
        return self.path(version).is_dir()

    def cached(self) -> list[int]:
        """Versions in bundles/, highest first."""
        return sorted(
            (int(p.name) for p in self.bundles.iterdir() if p.is_dir() and p.name.isdigit()),
            reverse=True,
        )

    def verify(self, version: int) -> dict[str, Any]:
        """The manifest of a cached bundle, if it still verifies; else BundleError."""
        return check(self.path(version), version, self.public_key)

    def remove(self, version: int) -> None:
        _remove_dir(self.path(version))

    def prune(self, keep: list[int]) -> list[int]:
        """Delete the cached bundles not in `keep`; the versions deleted."""
        removed = [v for v in self.cached() if v not in keep]
        for version in removed:
            self.remove(version)
        return removed

    def fetch(
        self,
        client: Client,
        version: int,
        files: list[dict[str, Any]],
        stop: threading.Event | None = None,
    ) -> Fetched:
        """Download, check and verify version `version` and move it into bundles/.

        BundleError: the bundle is refused (its download is deleted). ClientError: the server
        or the link failed; what arrived stays in downloads/ and is resumed next time."""
        listing = _listing(files)
        folder = self.downloads / str(int(version))
        folder.mkdir(parents=True, exist_ok=True)
        for stray in folder.iterdir():  # files no longer in the listing
            if stray.name not in listing and stray.name.removesuffix(".part") not in listing:
                _remove_path(stray)
        started = time.monotonic()
        fetched = 0
        resumed = False
        for name, item in listing.items():
            final, part = folder / name, folder / f"{name}.part"
            if final.is_file():
                if _matches(final, item):
                    continue
                final.unlink()
            for attempt in (1, 2):
                resumed = resumed or (part.exists() and part.stat().st_size > 0)
                fetched += client.download(
                    item["url"], part, item["size"], stop, label=f"{name} of version {version}"
                )
                if _matches(part, item):
                    os.replace(part, final)
                    break
                got, digest = part.stat().st_size, sha256_file(part)
                message = (
                    f"{name} does not match the SHA-256 of the server's listing (expected "
                    f"{item['size']} bytes, {item['sha256'][:12]}…; got {got} bytes, "
                    f"{digest[:12]}…)"
                )
                if attempt == 1:
                    log.warning("%s: damaged in transit? downloading it again", message)
                    part.unlink()
                else:
                    # the listing and the file disagree twice: let the signature decide
                    log.warning("%s again: checking it against the signed manifest", message)
                    os.replace(part, final)
        try:
            manifest = check(folder, version, self.public_key)
        except BundleError:
            _remove_dir(folder)
            raise
        target = self.path(version)
        if target.exists():
            _remove_dir(target)
        os.replace(folder, target)
        fsync_dir(self.bundles)
        return Fetched(version, manifest, fetched, time.monotonic() - started, resumed)

    def discard_download(self, version: int) -> None:
        _remove_dir(self.downloads / str(int(version)))

    def discard_downloads(self) -> None:
        """Drop every unfinished download (once the desired version serves, none is needed)."""
        for folder in self.downloads.iterdir():
            _remove_path(folder)


def check(directory: Path, version: int, public_key: Any) -> dict[str, Any]:
    """verify_bundle, and the signed manifest must be for this model version (a bundle signed
    for another version cannot be served under this one's number)."""
    manifest = verify_bundle(directory, public_key)
    signed_for = (manifest.get("model") or {}).get("model_version_id")
    if signed_for not in (None, "", 0) and int(signed_for) != int(version):
        raise BundleError(
            f"manifest.json is signed for model version {signed_for}, not {version}: the server "
            "offered another version's bundle under this number."
        )
    return manifest


def _listing(files: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(files, list):
        raise BundleError("The manifest's file list is not a list.")
    out = {}
    for item in files:
        try:
            name = str(item["name"])
            entry = {
                "url": str(item["url"]),
                "size": int(item["size"]),
                "sha256": str(item["sha256"]).lower(),
            }
        except (KeyError, TypeError, ValueError):
            raise BundleError(
                f"A file of the listing lacks name, url, size or sha256: {item!r}"
            ) from None
        if name not in BUNDLE_FILES:
            raise BundleError(
                f"The listing names {name!r}; a bundle holds only {', '.join(BUNDLE_FILES)}."
            )
        out[name] = entry
    missing = [n for n in BUNDLE_FILES if n not in out]
    if missing:
        raise BundleError(f"The listing lacks {', '.join(missing)}.")
    return out


def _matches(path: Path, item: dict[str, Any]) -> bool:
    return path.stat().st_size == item["size"] and sha256_file(path) == item["sha256"]


def _remove_path(path: Path) -> None:
    if path.is_dir():
        _remove_dir(path)
    else:
        path.unlink(missing_ok=True)


def _remove_dir(path: Path) -> None:
    """Rename the folder away first, so no half-deleted bundle is ever seen under its name."""
    if not path.exists():
        return
    aside = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)
