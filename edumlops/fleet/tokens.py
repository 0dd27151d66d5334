"""Edge node tokens: register a node (its token is returned once, only the SHA-256 is kept),
revoke it, and authenticate a node's request that carries `Authorization: Bearer edge_…`.
Every authenticated call records the node's last contact."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import permissions

from edumlops.audit import models as audit
from edumlops.core.keys import BearerKeyAuthentication, KeyPrincipal, hash_key
from edumlops.fleet.models import EdgeNode
from edumlops.schools.models import School

PREFIX = "edge_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


class NodeError(ValueError):
    """A registration or revocation that cannot happen, with the reason and the fix."""


def create(school: School, name: str, user: Any) -> tuple[EdgeNode, str]:
    """Register a node for a school; returns the node and its token (shown this once)."""
    name = (name or "").strip()
    if not NAME.match(name):
        raise NodeError(
            "Name the node with letters, digits, '-', '_' or '.' (up to 60 characters, no "
            "spaces), e.g. rhs-server-1."
        )
    if EdgeNode.objects.filter(school=school, name=name, revoked_at__isnull=True).exists():
        raise NodeError(
            f"{school} already has a node named {name}: choose another name, or revoke that "
            "node first."
        )
    key = PREFIX + secrets.token_urlsafe(30)
    try:
        with transaction.atomic():
            node = EdgeNode.objects.create(
                school=school,
                name=name,
                prefix=key[:12],
                key_hash=hash_key(key),
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            audit.record(
                action=audit.AuditRecord.Action.TOKEN,
                actor=user,
                target=node,
                after={"edge_node": node.name, "school": school.name, "prefix": node.prefix},
                reason="edge node registered",
            )
    except IntegrityError:  # registered in parallel under the same name
        raise NodeError(f"{school} already has a node named {name}: choose another name.") from None
    return node, key


def revoke(node: EdgeNode, user: Any) -> None:
    """Revoke the node's token: from now on every call it makes gets 401."""
    if not audit.revoke_once(node, user, "edge node revoked"):
        raise NodeError(f"{node} is already revoked.")


class EdgeNodeAuthentication(BearerKeyAuthentication):
    prefix = PREFIX
    refused = (
        "This edge node token is unknown or revoked: ask an admin to register the node "
        "again on the Edge page, then run `edumlops-edge register` with the new token."
    )

    def find(self, key_hash: str) -> EdgeNode | None:
        return (
            EdgeNode.objects.select_related("school__district")
            .filter(key_hash=key_hash, revoked_at__isnull=True)
            .first()
        )

    def principal(self, node: EdgeNode) -> KeyPrincipal:
        return KeyPrincipal(f"edge node {node}", f"edge:{node.name}")

    def touch(self, node: EdgeNode) -> None:
        node.last_contact = timezone.now()
        EdgeNode.objects.filter(pk=node.pk).update(last_contact=node.last_contact)


class IsEdgeNode(permissions.BasePermission):
    """Only a registered, unrevoked node (authenticated by its token)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, EdgeNode)


class EdgeNodeTokenScheme(OpenApiAuthenticationExtension):
    """Describes edge node tokens in the OpenAPI schema."""

    target_class = "edumlops.fleet.tokens.EdgeNodeAuthentication"
    name = "edgeNodeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An edge node token (edge_…) made on the Edge page.",
        }
