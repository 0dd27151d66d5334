"""Rolling out, promoting, rolling back, and which version answers for a school.

Every change locks the district row, so two changes to one district happen one after the other,
ends the deployment it replaces with a reason, starts the new one, and writes the audit trail —
all in one database transaction: the next request sees either the old state or the new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.deployments.models import Deployment
from edumlops.ml import task_types
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

D = Deployment
A = audit.AuditRecord.Action


class DeploymentError(ValueError):
    """A rollout, promotion or rollback that cannot happen, with the reason and the fix."""


def resolve(school: School) -> Deployment | None:
    """The deployment that answers for this school: its active pilot, else the district's."""
    active = D.objects.filter(status=D.Status.ACTIVE).select_related("model_version")
    pilot = active.filter(scope=D.Scope.PILOT, schools=school).order_by("-id").first()
    if pilot is not None:
        return pilot
    return active.filter(scope=D.Scope.DISTRICT, district_id=school.district_id).first()


def district_deployment(district: District) -> Deployment | None:
    return D.objects.filter(
        district=district, scope=D.Scope.DISTRICT, status=D.Status.ACTIVE
    ).first()


def last_known_good(deployment: Deployment) -> Deployment | None:
    """The deployment before this one on its scope that was not itself rolled back."""
    earlier = deployment.previous
    seen = set()
    while earlier is not None and earlier.status == D.Status.ROLLED_BACK:
        if earlier.pk in seen:  # never loops, but a broken chain must not hang a request
            return None
        seen.add(earlier.pk)
        earlier = earlier.previous
    return earlier


def _lock(district: District) -> None:
    District.objects.select_for_update().filter(pk=district.pk).exists()


def _servable(model: ModelVersion, district: District) -> None:
    if model.district_id != district.pk:
        raise DeploymentError(f"{model} belongs to another district.")
    refused = task_types.refusal(
        "Serving to schools", model.task_type, (task_types.TaskType.BINARY_RISK,), {}
    )
    if refused:
        raise DeploymentError(f"{model}: {refused}")
    if not (model.bundle or {}).get("manifest"):
        raise DeploymentError(
            f"{model} has no signed ONNX bundle: run Export ONNX on it (the training workflow "
            "does) before rolling it out."
        )


def _end(deployment: Deployment, status: str, user: Any, reason: str) -> None:
    deployment.status = status
    deployment.ended_at = timezone.now()
    deployment.ended_by = user if getattr(user, "is_authenticated", False) else None
    deployment.ended_reason = reason
    deployment.save(update_fields=["status", "ended_at", "ended_by", "ended_reason"])


def _version(deployment: Deployment | None) -> dict[str, Any]:
    if deployment is None:
        return {}
    return {
        "deployment": deployment.pk,
        "model": deployment.model_version.name,
        "version": deployment.model_version.version,
        "scope": deployment.scope,
    }


def _user(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


def roll_out(
    model: ModelVersion,
    *,
    scope: str,
    schools: Iterable[School] = (),
    user: Any = None,
    reason: str = "",
    run: Any = None,
    action: str = A.ROLLOUT,
) -> Deployment:
    district = model.district
    _servable(model, district)
    schools = list(schools)
    with transaction.atomic():
        _lock(district)
        if scope == D.Scope.DISTRICT:
            current = district_deployment(district)
            if current is not None and current.model_version_id == model.pk:
                raise DeploymentError(f"{model} is already the district's active version.")
            if current is not None:
                _end(current, D.Status.SUPERSEDED, user, reason or f"replaced by {model}")
            new = D.objects.create(
                district=district,
                model_version=model,
                scope=scope,
                previous=current,
                reason=reason,
                created_by=_user(user),
                workflow_run=run,
            )
            before = _version(current)
        elif scope == D.Scope.PILOT:
            if not schools:
                raise DeploymentError("A pilot needs at least one school: choose the schools.")
            foreign = [s.name for s in schools if s.district_id != district.pk]
            if foreign:
                raise DeploymentError(f"Not schools of {district}: {', '.join(foreign)}.")
            busy = D.objects.filter(
                status=D.Status.ACTIVE, scope=D.Scope.PILOT, schools__in=schools
            ).distinct()
            if busy:
                names = sorted(s.name for b in busy for s in b.schools.all() if s in set(schools))
                raise DeploymentError(
                    f"{', '.join(names)} already pilot another version ({busy[0]}): end or "
                    "promote that pilot first."
                )
            new = D.objects.create(
                district=district,
                model_version=model,
                scope=scope,
                reason=reason,
                created_by=_user(user),
                workflow_run=run,
            )
            new.schools.set(schools)
            before = _version(district_deployment(district))
        else:
            raise DeploymentError(f"Unknown scope '{scope}': use pilot or district.")
        audit.record(
            action=action,
            actor=user,
            target=new,
            before=before,
            after={**_version(new), "schools": [s.name for s in schools]},
            reason=reason,
        )
    return new


def promote(
    pilot: Deployment, *, user: Any = None, reason: str = "", run: Any = None
) -> Deployment:
    """The pilot's version becomes the district's; the pilot ends as promoted."""
    if pilot.scope != D.Scope.PILOT or not pilot.active:
        raise DeploymentError("Only an active pilot can be promoted to the district.")
    with transaction.atomic():
        _lock(pilot.district)
        pilot.refresh_from_db()
        if not pilot.active:
            raise DeploymentError("This pilot has ended in the meantime.")
        _end(pilot, D.Status.PROMOTED, user, reason or "promoted to the district")
        return roll_out(
            pilot.model_version,
            scope=D.Scope.DISTRICT,
            user=user,
            reason=reason or f"promoted from pilot #{pilot.pk}",
            run=run,
            action=A.PROMOTION,
        )


def rollback(
    deployment: Deployment,
    *,
    user: Any = None,
    reason: str = "",
    target: ModelVersion | None = None,
) -> Deployment | None:
    """Replace an active deployment by its last known good version (or `target`) in one
    transaction. A pilot without a target simply ends: its schools fall back to the district's
    version. Returns what now answers on that scope."""
    if not reason.strip():
        raise DeploymentError("Say why you roll back: the reason goes to the audit trail.")
    district = deployment.district
    with transaction.atomic():
        _lock(district)
        deployment = D.objects.select_related("model_version").get(pk=deployment.pk)
        if not deployment.active:
            raise DeploymentError(
                f"Deployment #{deployment.pk} is no longer active ({deployment.status}): roll "
                "back the active one."
            )
        good = last_known_good(deployment)
        if target is not None:
            _servable(target, district)
            if target.pk == deployment.model_version_id:
                raise DeploymentError(f"{target} is the version in use: choose another.")
        elif deployment.scope == D.Scope.DISTRICT:
            if good is None:
                raise DeploymentError(
                    "There is no earlier version on the district to go back to: name a target "
                    "version."
                )
            target = good.model_version
        schools = list(deployment.schools.all())
        _end(deployment, D.Status.ROLLED_BACK, user, reason)
        new = None
        if target is not None:
            new = D.objects.create(
                district=district,
                model_version=target,
                scope=deployment.scope,
                previous=good.previous
                if good and good.model_version_id == target.pk
                else deployment,
                reason=f"rollback of #{deployment.pk}: {reason}",
                created_by=_user(user),
            )
            if schools:
                new.schools.set(schools)
        now = new or district_deployment(district)
        audit.record(
            action=A.ROLLBACK,
            actor=user,
            target=deployment,
            before=_version(deployment),
            after=_version(now),
            reason=reason,
        )
    return now


def rollback_school(school: School, *, user: Any = None, reason: str = "") -> Deployment:
    """Put one school back on the version before the one it uses now. A school that is alone in
    its pilot rolls that pilot back; otherwise it gets a one-school deployment of the last known
    good version, and the rest of the district is untouched."""
    current = resolve(school)
    if current is None:
        raise DeploymentError(f"{school} has no model deployed: nothing to roll back.")
    if current.scope == D.Scope.PILOT and list(current.schools.all()) == [school]:
        result = rollback(current, user=user, reason=reason)
        if result is None:
            raise DeploymentError(f"{school} has no version to fall back to.")
        return result
    good = last_known_good(current) if current.scope == D.Scope.DISTRICT else None
    target = good.model_version if good else None
    if current.scope == D.Scope.PILOT:  # a pilot of several schools: back to the district's
        target = (district_deployment(school.district) or current).model_version
    if target is None or target.pk == current.model_version_id:
        raise DeploymentError(f"{school} has no earlier version to go back to.")
    if not reason.strip():
        raise DeploymentError("Say why you roll back: the reason goes to the audit trail.")
    with transaction.atomic():
        _lock(school.district)
        override = D.objects.create(
            district=school.district,
            model_version=target,
            scope=D.Scope.PILOT,
            previous=current,
            reason=f"rollback of {school} only: {reason}",
            created_by=_user(user),
        )
        if current.scope == D.Scope.PILOT:
            current.schools.remove(school)
        override.schools.set([school])
        audit.record(
            action=A.ROLLBACK,
            actor=user,
            target=school,
            target_type="schools.school",
            before=_version(current),
            after=_version(override),
            reason=reason,
        )
    return override
