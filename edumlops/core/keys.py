"""Keys that machines present as `Authorization: Bearer <prefix>…` (integration tokens, edge node
tokens): only their SHA-256 is stored, and one authentication class reads them all."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from rest_framework import authentication, exceptions


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyPrincipal:
    """Who is calling with a key: no account and no role, only what the key was made for."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, label: str, username: str) -> None:
        self.label = label
        self.username = username

    def __str__(self) -> str:
        return self.label

    def get_username(self) -> str:
        return self.username


class BearerKeyAuthentication(authentication.BaseAuthentication):
    """`Bearer <prefix>…`: a header with another prefix is left to the other classes; a key
    with this prefix that is unknown or revoked is refused with `refused`."""

    keyword = "Bearer"
    prefix: ClassVar[str]
    refused: ClassVar[str]

    def find(self, key_hash: str) -> Any:
        """The live (unrevoked) object the key belongs to, or None."""
        raise NotImplementedError

    def principal(self, obj: Any) -> KeyPrincipal:
        raise NotImplementedError

    def touch(self, obj: Any) -> None:
        """Record the use (last seen)."""

    def authenticate(self, request: Any) -> tuple[KeyPrincipal, Any] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        kind, _, key = header.partition(" ")
        key = key.strip()
        if kind != self.keyword or not key.startswith(self.prefix):
            return None
        obj = self.find(hash_key(key))
        if obj is None:
            raise exceptions.AuthenticationFailed(self.refused)
        self.touch(obj)
        return self.principal(obj), obj

    def authenticate_header(self, request: Any) -> str:
        return self.keyword
