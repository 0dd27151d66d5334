"""A person's API keys: make one (the key is shown once), list them, revoke one — over the API
(`/api/me/keys/`) and on the API keys page in the user menu. Each creation and revocation is in
the audit trail. A key acts as its user (edumlops/core/userkeys.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.audit import models as audit
from edumlops.core.api import Conflict, errors, parse
from edumlops.core.models import UserKey
from edumlops.core.throttles import TokenThrottle

TEMPLATE = "core/api_keys.html"


class KeyProblem(ValueError):
    """A key that cannot be made or revoked, with the reason."""


def create_key(user: Any, name: str) -> tuple[UserKey, str]:
    """A new key for `user`, audited; returns the row and the key (shown this once)."""
    with transaction.atomic():
        try:
            key, raw = UserKey.issue(user, name)
        except ValueError as exc:
            raise KeyProblem(str(exc)) from None
        audit.record(
            action=audit.AuditRecord.Action.TOKEN,
            actor=user,
            target=key,
            after={"user_key": key.name, "prefix": key.prefix},
            reason="API key created",
        )
    return key, raw


def revoke_key(key: UserKey, user: Any) -> UserKey:
    """Revoke `key`, audited: from now on a call with it gets 401."""
    if not audit.revoke_once(key, user, "API key revoked"):
        raise KeyProblem(f"The key {key} is already revoked.")
    return key


def own_keys(user: Any) -> list[UserKey]:
    """The user's keys, live ones first, newest first."""
    return sorted(
        UserKey.objects.filter(user=user), key=lambda k: (k.revoked_at is not None, -k.pk)
    )


# --- API -----------------------------------------------------------------------------------------


class UserKeyOut(serializers.ModelSerializer):
    legacy = serializers.BooleanField(
        read_only=True, help_text="Migrated from an old token: sent as `Token <key>`."
    )

    class Meta:
        model = UserKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "legacy"]
        read_only_fields = fields


class UserKeyCreatedOut(UserKeyOut):
    key = serializers.CharField(
        read_only=True, help_text="The key, shown this once: send it as `Bearer <key>`."
    )

    class Meta(UserKeyOut.Meta):
        fields = [*UserKeyOut.Meta.fields, "key"]
        read_only_fields = fields


class UserKeyIn(serializers.Serializer):
    name = serializers.CharField(
        max_length=100, help_text="What will use the key, e.g. 'grading notebook'."
    )


@extend_schema(methods=["GET"], responses={200: UserKeyOut(many=True)})
@extend_schema(methods=["POST"], request=UserKeyIn, responses={201: UserKeyCreatedOut})
@api_view(["GET", "POST"])
@throttle_classes([TokenThrottle])
def key_list(request: Request) -> Response:
    """GET: your API keys (never the keys themselves). POST: make one; the answer holds the key,
    shown this once. Keys are made while signed in (session), not with another key, so that a
    leaked key cannot make itself a successor."""
    if request.method == "GET":
        return Response(UserKeyOut(own_keys(request.user), many=True).data)
    if isinstance(request.auth, UserKey):
        raise PermissionDenied(
            "Make API keys on the API keys page, signed in: a key may not make keys."
        )
    data = parse(UserKeyIn, request.data)
    try:
        key, raw = create_key(request.user, data["name"])
    except KeyProblem as exc:
        raise serializers.ValidationError({"name": [str(exc)]}) from None
    body = UserKeyOut(key).data | {"key": raw}
    return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(request=None, responses={200: UserKeyOut, **errors(409)})
@api_view(["POST"])
def key_revoke(request: Request, pk: int) -> Response:
    """Revoke one of your keys (another user's key is a 404): calls with it get 401 from now on."""
    key = get_object_or_404(UserKey.objects.filter(user=request.user), pk=pk)
    try:
        revoke_key(key, request.user)
    except KeyProblem as exc:
        raise Conflict(str(exc)) from None
    return Response(UserKeyOut(key).data)


# --- the page ------------------------------------------------------------------------------------


@login_required
def keys_page(request: HttpRequest) -> HttpResponse:
    """List, make and revoke your API keys. A new key is shown on the answer to its POST only."""
    extra: dict[str, Any] = {}
    if request.method == "POST":
        if request.POST.get("do") == "revoke":
            pk = request.POST.get("key", "")
            if not pk.isdigit():
                raise Http404("No such key.")
            key = get_object_or_404(UserKey.objects.filter(user=request.user), pk=int(pk))
            try:
                revoke_key(key, request.user)
                extra = {"notice": f"The key {key} is revoked: calls with it now get 401."}
            except KeyProblem as exc:
                extra = {"problem": str(exc)}
        else:
            try:
                key, raw = create_key(request.user, request.POST.get("name", "")[:100])
                extra = {"new_key": key, "new_secret": raw}
            except KeyProblem as exc:
                extra = {"problem": str(exc)}
    context = {"keys": own_keys(request.user), **extra}
    if request.htmx:
        return TemplateResponse(request, f"{TEMPLATE}#keys", context)
    return TemplateResponse(request, TEMPLATE, context)
