"""Authenticate a person's API call by their key: `Authorization: Bearer usr_…` (and, for keys
migrated from the old plain-text DRF tokens, `Authorization: Token <key>`). The request then acts
as the key's user, with their roles; request.auth is the UserKey."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from edumlops.core.keys import BearerKeyAuthentication, hash_key
from edumlops.core.models import PREFIX, UserKey

LEGACY_KEYWORD = "Token"


class UserKeyAuthentication(BearerKeyAuthentication):
    prefix = PREFIX
    refused = "This API key is unknown or revoked: make a new one under API keys in your menu."

    def find(self, key_hash: str) -> UserKey | None:
        return (
            UserKey.objects.select_related("user")
            .filter(key_hash=key_hash, revoked_at__isnull=True)
            .first()
        )

    def authenticate(self, request: Any) -> tuple[Any, UserKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        kind, _, key = header.partition(" ")
        key = key.strip()
        if kind == LEGACY_KEYWORD and key:
            # only keys migrated from DRF tokens answer to `Token`; a usr_ key sent so is refused
            found = None if key.startswith(PREFIX) else self.find(hash_key(key))
            if found is None:
                raise exceptions.AuthenticationFailed(self.refused)
            return self._accept(found)
        if kind != self.keyword or not key.startswith(self.prefix):
            return None
        found = self.find(hash_key(key))
        if found is None:
            raise exceptions.AuthenticationFailed(self.refused)
        return self._accept(found)

    def _accept(self, key: UserKey) -> tuple[Any, UserKey]:
        if not key.user.is_active:
            raise exceptions.AuthenticationFailed(
                "This API key's account is deactivated: ask an admin."
            )
        self.touch(key)
        return key.user, key

    def touch(self, key: UserKey) -> None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1):
            # at most one write a minute per key, not one per request
            UserKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now


class UserKeyScheme(OpenApiAuthenticationExtension):
    """Describes user API keys in the OpenAPI schema."""

    target_class = "edumlops.core.userkeys.UserKeyAuthentication"
    name = "userKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Your API key (usr_…), made under API keys in your menu; it acts "
            "as you, with your roles.",
        }
