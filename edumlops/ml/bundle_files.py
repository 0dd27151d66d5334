"""The files of a signed model bundle and their check, with the standard library and
`cryptography` only (no numpy, pandas or scikit-learn): the server and the edge agent verify
bundles with this same code.

A bundle is a folder: `model.onnx`, `manifest.json` (model, features, thresholds, the SHA-256 of
every file, the signing key's id) and `manifest.sig` (Ed25519 over the manifest's exact bytes).
Verifying checks the signature first, then every file's digest; nothing is loaded from a bundle
that fails either.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edumlops.ml import signing

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
BUNDLE_FILES = (MANIFEST_FILE, SIGNATURE_FILE, MODEL_FILE)
BUNDLE_FORMAT = 1


class BundleError(ValueError):
    """A bundle is incomplete, altered, or signed by another key."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()


def verify_bundle(directory: Path, public_key: Any) -> dict[str, Any]:
    """The manifest, if the signature and every file's SHA-256 match; else BundleError."""
    directory = Path(directory)
    for name in (MANIFEST_FILE, SIGNATURE_FILE):
        if not (directory / name).is_file():
            raise BundleError(f"The bundle in {directory} has no {name}: download it again.")
    body = (directory / MANIFEST_FILE).read_bytes()
    try:
        signing.verify(public_key, body, (directory / SIGNATURE_FILE).read_text())
    except signing.SignatureError as exc:
        raise BundleError(f"manifest.json: {exc}") from None
    manifest = json.loads(body)
    files = manifest.get("files") or {}
    if MODEL_FILE not in files:
        raise BundleError("The manifest lists no model.onnx.")
    for name, expected in files.items():
        path = directory / name
        if Path(name).name != name:
            raise BundleError(f"The manifest names a file outside the bundle: {name!r}.")
        if not path.is_file():
            raise BundleError(f"{name} is missing from the bundle: download it again.")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{name} does not match its SHA-256 in the signed manifest (expected "
                f"{expected[:12]}…, found {actual[:12]}…): the file was altered or damaged; "
                "download the bundle again."
            )
    return manifest
