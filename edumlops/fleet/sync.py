"""Publishing a deployment's bundle to the edge servers of its schools, and who confirmed it.
The "Sync to school servers" block waits on these; the rules live here."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.utils import timezone

from edumlops.deployments.models import Deployment
from edumlops.deployments.services import resolve
from edumlops.fleet import bundles
from edumlops.fleet.models import EdgeEvent, EdgeNode
from edumlops.schools.models import School


def target_schools(deployment: Deployment) -> tuple[list[School], list[str]]:
    """The schools whose servers should serve this deployment (the pilot's, or every school
    the district's version answers for), and a note for each school left out."""
    if deployment.scope == "pilot":
        return list(deployment.schools.order_by("name")), []
    schools, notes = [], []
    for school in deployment.district.schools.order_by("name"):
        answering = resolve(school)
        if answering is not None and answering.pk == deployment.pk:
            schools.append(school)
        else:
            notes.append(f"{school} is on its own pilot: its servers are not waited for")
    return schools, notes


def nodes_at(schools: list[School]) -> list[EdgeNode]:
    return list(
        EdgeNode.objects.filter(school__in=schools, revoked_at__isnull=True)
        .select_related("school")
        .order_by("school__name", "name")
    )


def needed(min_share: float, nodes: list[EdgeNode]) -> int:
    return math.ceil(min_share * len(nodes) - 1e-9)


def publish(
    deployment: Deployment, model: Any, nodes: list[EdgeNode], run_id: int, step: str
) -> str:
    """Record that the model is published to each node (once per run step, so a step taken
    over publishes once); BundleUnavailable when the server has no copy for them to fetch."""
    bundles.files(model)  # the server's copy that the nodes download
    now = timezone.now()
    EdgeEvent.objects.bulk_create(
        [
            EdgeEvent(
                node=node,
                client_id=f"published:{run_id}:{step}:{model.pk}"[:80],
                kind=EdgeEvent.Kind.PUBLISHED,
                model_version=model,
                detail=f"workflow run {run_id}: deployment #{deployment.pk}",
                at=now,
            )
            for node in nodes
        ],
        ignore_conflicts=True,
    )
    return (
        f"Published {model} to {len(nodes)} edge server(s) at "
        f"{len({n.school_id for n in nodes})} school(s)"
    )


def confirmed(nodes: list[EdgeNode], model: Any) -> set[int]:
    """The nodes that report serving `model`."""
    pks = [n.pk for n in nodes]
    return set(
        EdgeNode.objects.filter(pk__in=pks, active_version=model).values_list("pk", flat=True)
    )


def laggards(
    nodes: list[EdgeNode],
    done: set[int],
    model: Any,
    need: int,
    timeout_minutes: float,
    min_share: float,
) -> str:
    """The timeout message: who did not confirm, when each was last heard from, and why if it
    said so (a rejected bundle)."""
    now = timezone.now()
    late = []
    for node in nodes:
        if node.pk in done:
            continue
        node.refresh_from_db()
        contact = node.contact(now, int(settings.EDGE_POLL_SECONDS))
        _, state = node.sync_state(model, list(node.events.all()[:5]))
        said = "" if state in ("behind", "waiting for first contact") else f"; {state}"
        seen = "never contacted" if node.last_contact is None else f"last contact {contact['last']}"
        late.append(f"{node.name} at {node.school} ({seen}{said})")
    return (
        f"Only {len(done)} of {len(nodes)} edge server(s) serve {model} after "
        f"{timeout_minutes:g} min (needed {need}, min share {min_share:g}). Not "
        f"confirmed: {'; '.join(late)}. Check that these servers are on and online, or lower "
        "the share or raise the timeout."
    )
