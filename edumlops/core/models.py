"""User API keys: `Authorization: Bearer usr_…` for a person's scripts and notebooks. Like the
integration and edge keys (edumlops/core/keys.py) only the key's SHA-256 is stored; the key itself
is shown once, when it is made."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from edumlops.core.keys import hash_key

PREFIX = "usr_"


class UserKey(models.Model):
    """One API key of one user; it acts as that user, with their roles. Revoked keys stay listed
    (revoked_at set) so the owner sees what stopped working and when."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)  # the first characters, to recognise a key
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def legacy(self) -> bool:
        """Migrated from a plain-text DRF token: it has no usr_ prefix and is sent as
        `Authorization: Token <key>` (docs/security.md)."""
        return not self.prefix.startswith(PREFIX)

    @classmethod
    def issue(cls, user: Any, name: str) -> tuple[UserKey, str]:
        """A new key for `user`; returns the row and the key, which is never stored."""
        name = (name or "").strip()
        if not name:
            raise ValueError("Name the key after what will use it, e.g. 'grading notebook'.")
        key = PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(
            user=user, name=name[:100], prefix=key[:12], key_hash=hash_key(key)
        )
        return row, key
