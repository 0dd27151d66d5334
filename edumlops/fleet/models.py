"""The edge fleet: school servers (nodes) that serve the district's signed models offline, and
what they told the server (events). A node authenticates with its own token; only the token's
SHA-256 is stored. See docs/edge-protocol.md for the conversation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from edumlops.schools.models import School


def in_words(delta: dt.timedelta) -> str:
    """A short duration in words: '40 s', '3 min', '2 h', '5 days'."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


class EdgeNode(models.Model):
    """One school server running `edumlops-edge`, registered by an admin."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="edge_nodes")
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=12)  # the first characters of the token, to recognise it
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_contact = models.DateTimeField(null=True, blank=True)
    # what the node reported in its last heartbeat
    active_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cached_versions = models.JSONField(default=list, blank=True)
    device_profile = models.JSONField(default=dict, blank=True)
    pending_telemetry = models.PositiveIntegerField(default=0)
    serving = models.CharField(max_length=20, blank=True)  # ok / degraded / unavailable
    agent_version = models.CharField(max_length=40, blank=True)
    last_event = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["school__name", "name"]
        constraints = [
            # a revoked node's name may be given to its replacement
            models.UniqueConstraint(
                fields=["school", "name"],
                condition=Q(revoked_at__isnull=True),
                name="one_active_edge_node_name_per_school",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.school})"

    def permission_scope(self) -> School:
        return self.school

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def offline_after(self, poll_seconds: int) -> dt.timedelta:
        return dt.timedelta(seconds=3 * poll_seconds)

    def contact(self, now: dt.datetime, poll_seconds: int) -> dict[str, Any]:
        """Online or offline (no contact for more than three polls), in words."""
        if self.last_contact is None:
            return {"online": False, "last": "never contacted", "state": "never contacted"}
        silence = now - self.last_contact
        online = silence <= self.offline_after(poll_seconds)
        return {
            "online": online,
            "last": "just now" if silence.total_seconds() < 5 else f"{in_words(silence)} ago",
            "state": "online" if online else f"offline {in_words(silence)}",
            "offline_seconds": 0 if online else int(silence.total_seconds()),
        }

    def sync_state(self, desired: Any, events: list[EdgeEvent]) -> tuple[str, str]:
        """(code, words) comparing the version the node serves with the one its school should:
        in sync, behind, or rejected (its latest word on the desired version is a refusal)."""
        if desired is None:
            return "none", "no model deployed"
        if self.last_contact is None:
            return "never", "waiting for first contact"
        if self.active_version_id == desired.pk:
            return "in_sync", "in sync"
        for event in events:  # newest first
            if event.model_version_id != desired.pk:
                continue
            if event.kind in (EdgeEvent.Kind.REJECTED, EdgeEvent.Kind.LOAD_FAILED):
                what = "rejected" if event.kind == EdgeEvent.Kind.REJECTED else "could not load"
                return "rejected", f"{what} v{desired.version}: {event.detail}"
            if event.kind == EdgeEvent.Kind.ACTIVATED:
                break
        return "behind", "behind"


class EdgeEvent(models.Model):
    """Something a node reported (activated, rejected…), stored once per client-made id, or a
    bundle the server published to it."""

    class Kind(models.TextChoices):
        ACTIVATED = "activated", "activated"
        REJECTED = "rejected", "rejected"
        LOAD_FAILED = "load_failed", "could not load"
        FALLBACK = "fallback", "fell back"
        UNAVAILABLE = "unavailable", "nothing can serve"
        PUBLISHED = "published", "published"

    node = models.ForeignKey(EdgeNode, on_delete=models.CASCADE, related_name="events")
    client_id = models.CharField(max_length=80)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    model_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.TextField(blank=True)
    at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["node", "client_id"], name="one_edge_event_per_id")
        ]
        indexes = [models.Index(fields=["node", "-at"])]

    def __str__(self) -> str:
        return f"{self.node.name}: {self.kind} {self.detail[:40]}"

    def permission_scope(self) -> School:
        return self.node.school


def describe(nodes: list[EdgeNode], now: dt.datetime, events_per_node: int = 5) -> list[dict]:
    """What the Edge page and the nodes API show for each node: contact, the version it serves
    against the one its school should (in sync / behind / rejected), its cache, its device
    profile and its latest events."""
    from edumlops.deployments.services import resolve
    from edumlops.registry.models import ModelVersion

    poll = int(settings.EDGE_POLL_SECONDS)
    desired: dict[int, Any] = {}
    recent: dict[int, list[EdgeEvent]] = {}
    for node in nodes:
        if node.school_id not in desired:
            deployment = resolve(node.school)
            desired[node.school_id] = deployment.model_version if deployment else None
        recent[node.pk] = []
    # each node's latest events, in one query for all nodes
    latest = (
        EdgeEvent.objects.filter(node__in=nodes)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=F("node_id"), order_by=[F("at").desc(), F("id").desc()]
            )
        )
        .filter(rank__lte=events_per_node)
        .order_by("node_id", "-at", "-id")
    )
    for event in latest:
        recent[event.node_id].append(event)
    ids = {i for n in nodes for i in n.cached_versions if isinstance(i, int)}
    ids |= {n.active_version_id for n in nodes if n.active_version_id}
    ids |= {e.model_version_id for items in recent.values() for e in items if e.model_version_id}
    versions = ModelVersion.objects.in_bulk(ids)

    def label(pk: int | None) -> str:
        if pk is None:
            return "none"
        model = versions.get(pk)
        return f"{model.display_name} v{model.version}" if model else f"#{pk}"

    out = []
    for node in nodes:
        want = desired[node.school_id]
        code, words = node.sync_state(want, recent[node.pk])
        profile = node.device_profile if isinstance(node.device_profile, dict) else {}
        out.append(
            {
                "node": node,
                "contact": node.contact(now, poll),
                "sync": {"code": code, "words": words},
                "active": label(node.active_version_id) if node.active_version_id else "none",
                "active_version": node.active_version_id,
                "desired": f"{want.display_name} v{want.version}" if want else "none",
                "desired_version": want.pk if want else None,
                "cached": [label(i) for i in node.cached_versions if isinstance(i, int)],
                "profile": profile,
                "events": [
                    {
                        "kind": e.kind,
                        "what": e.get_kind_display(),
                        "version": label(e.model_version_id) if e.model_version_id else "",
                        "detail": e.detail,
                        "at": e.at,
                    }
                    for e in recent[node.pk]
                ],
            }
        )
    return out
