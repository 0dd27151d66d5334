"""Request rates for the API's busy doors (predict, token creation, uploads, telemetry), set from
the environment (EDUMLOPS_THROTTLE_<SCOPE>, e.g. "600/min"; docs/security.md). Over the rate the
API answers 429 with `Retry-After`. Counts live in the shared cache, so every worker sees them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    """Counts the writes (not GET, HEAD or OPTIONS) per caller: a user (however signed in:
    session or any of their API keys, so making more keys buys no more requests), a key that is
    not a user's (integration token or edge node, by its id) or, for anonymous requests, the
    client address."""

    def allow_request(self, request: Any, view: Any) -> bool:
        # only requests that change something count: listing tokens or datasets is never limited
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        # read on each request (not frozen at import), so a deployment or a test can change it
        return settings.EDUMLOPS_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request: Any, view: Any) -> str:
        from edumlops.core.models import UserKey

        auth = getattr(request, "auth", None)
        user = getattr(request, "user", None)
        if isinstance(auth, UserKey):
            ident = f"user:{auth.user_id}"
        elif auth is not None and hasattr(auth, "pk") and not isinstance(auth, (str, bytes)):
            ident = f"{type(auth).__name__}:{auth.pk}"
        elif user is not None and getattr(user, "is_authenticated", False) and user.pk:
            ident = f"user:{user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PredictThrottle(CallerRateThrottle):
    scope = "predict"


class TokenThrottle(CallerRateThrottle):
    scope = "tokens"


class UploadThrottle(CallerRateThrottle):
    scope = "uploads"


class TelemetryThrottle(CallerRateThrottle):
    scope = "telemetry"
