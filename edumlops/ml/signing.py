"""Ed25519 keys for signing model bundles: the district keeps the private key, schools' edge
servers get the public key and refuse any manifest it did not sign."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SignatureError(ValueError):
    """A signature does not match, or a key cannot be read."""


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Read the PEM key at `path`, or create one there (mode 0600, written atomically so two
    workers starting at once end with the same key)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise SignatureError(
            f"The signing key at {path} cannot be read ({exc}): restore it from a backup or "
            "move it away to create a new one (edge servers then need the new public key)."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"The key at {path} is not an Ed25519 key.")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError(f"Not a PEM public key ({exc}).") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("The public key is not an Ed25519 key.")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of the public key (first 16 hex digits of SHA-256 of its raw bytes)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def verify(key: Ed25519PublicKey, data: bytes, signature: str) -> None:
    try:
        key.verify(base64.b64decode(signature.strip(), validate=True), data)
    except (InvalidSignature, ValueError):
        raise SignatureError(
            "The signature does not match: the bundle was changed after signing or signed "
            "with another district's key."
        ) from None
