"""Integration tokens: create (the key is returned once), revoke, authenticate a request that
carries `Authorization: Bearer edu_…`, and the school such a request (or a user's) may act on."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.exceptions import PermissionDenied

from edumlops.audit import models as audit
from edumlops.core.keys import BearerKeyAuthentication, KeyPrincipal, hash_key
from edumlops.deployments.models import IntegrationToken
from edumlops.schools.models import District, School
from edumlops.schools.permissions import Action, require, visible_schools

PREFIX = "edu_"


def create(
    district: District, name: str, user: Any, school: School | None = None
) -> tuple[IntegrationToken, str]:
    name = name.strip()
    if not name:
        raise ValueError("Name the token after what will use it, e.g. 'SIS nightly scores'.")
    key = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = IntegrationToken.objects.create(
            district=district,
            school=school,
            name=name[:100],
            prefix=key[:12],
            key_hash=hash_key(key),
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        audit.record(
            action=audit.AuditRecord.Action.TOKEN,
            actor=user,
            target=token,
            after={"name": token.name, "school": school.name if school else "whole district"},
        )
    return token, key


def revoke(token: IntegrationToken, user: Any) -> None:
    """Revoke the token (audited); revoking it again changes nothing."""
    from edumlops.deployments import hotpath

    with transaction.atomic():
        if audit.revoke_once(token, user, "integration token revoked"):
            hotpath.bump()  # every serving process forgets the key before this returns


def school_for_caller(request: Any, pk: int, action: Action) -> School:
    """School `pk`, if the caller may act on it: an integration token (request.auth) within its
    scope, whatever `action`; a user who sees the school and may take `action` there. Raises
    Http404 (unknown, or not visible to the user) or PermissionDenied (403, saying why)."""
    if isinstance(request.auth, IntegrationToken):
        school = get_object_or_404(School, pk=pk)
        if not request.auth.may_predict_for(school):
            token = request.auth
            raise PermissionDenied(f"This token is for {token.school or token.district}.")
        return school
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    require(request.user, action, school)
    return school


class IntegrationTokenAuthentication(BearerKeyAuthentication):
    prefix = PREFIX
    refused = "This integration token is unknown or revoked: ask district staff for a new one."

    def find(self, key_hash: str) -> IntegrationToken | None:
        return IntegrationToken.objects.filter(key_hash=key_hash, revoked_at__isnull=True).first()

    def principal(self, token: IntegrationToken) -> KeyPrincipal:
        return KeyPrincipal(f"integration {token}", f"token:{token.prefix}")

    def touch(self, token: IntegrationToken) -> None:
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
            # at most one write a minute per token, not one per request
            IntegrationToken.objects.filter(pk=token.pk).update(last_used_at=now)


class IntegrationTokenScheme(OpenApiAuthenticationExtension):
    """Describes integration tokens in the OpenAPI schema."""

    target_class = "edumlops.deployments.tokens.IntegrationTokenAuthentication"
    name = "integrationToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An integration token (edu_…) made on the Deployments page.",
        }
