"""Failed-login lockout (django-axes, configured in settings.py): the authentication backend that
checks it, the page a locked-out login gets (429) and the audit record of each lockout."""

from __future__ import annotations

import math
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username, get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from edumlops.audit import models as audit


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out account or address before any password is checked (the next
    backend checks the password). Every login door passes the request, so every door counts;
    an authenticate() without a request (the test client's login(), a shell) has no address to
    count and is let through to the password check."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The lockout page: what happened and when to try again (each try during the lockout
    restarts the wait), answered 429 with Retry-After."""
    wait = get_cool_off(request)
    retry_at = timezone.localtime(timezone.now() + wait) if wait else None
    response = TemplateResponse(
        request,
        "registration/locked_out.html",
        {
            "username": get_client_username(request, credentials) or "",
            "retry_at": retry_at,
            "minutes": math.ceil(wait.total_seconds() / 60) if wait else None,
            "failures": settings.AXES_FAILURE_LIMIT,
        },
        status=429,
    )
    if wait:
        response["Retry-After"] = str(math.ceil(wait.total_seconds()))
    return response.render()


@receiver(user_locked_out)
def record_lockout(
    sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs: Any
) -> None:
    """One audit record when an account or an address becomes locked out (not one per further
    try: those only restart the wait)."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures != settings.AXES_FAILURE_LIMIT:
        return
    user = get_user_model().objects.filter(username=username).first() if username else None
    wait = get_cool_off(request)
    audit.record(
        action=audit.AuditRecord.Action.LOGIN_LOCKOUT,
        actor=None,
        target=user,
        target_type="" if user else "auth.user",
        target_label="" if user else (username or "")[:300],
        after={
            "username": username or "",
            "address": ip_address or "",
            "failures": failures,
            "locked_minutes": round(wait.total_seconds() / 60) if wait else None,
        },
        reason=f"{failures} failed logins for {username!r} or from {ip_address}",
    )
