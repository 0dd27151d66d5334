"""The deployments page: which version each school gets, roll out, promote, and the Rollback
button (its dialog says exactly what will change)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.deployments import rollout, services, tokens
from edumlops.deployments.models import Deployment, IntegrationToken
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School
from edumlops.schools.permissions import Action, can, require, visible_districts, visible_schools


def rollback_plan(deployment: Deployment) -> dict:
    """What the Rollback button will do, in words, for its confirmation dialog."""
    good = services.last_known_good(deployment)
    if deployment.scope == Deployment.Scope.DISTRICT:
        schools = list(deployment.district.schools.all())
        pilots = {
            s.pk
            for d in Deployment.objects.filter(
                district=deployment.district, scope="pilot", status="active"
            )
            for s in d.schools.all()
        }
        affected = [s for s in schools if s.pk not in pilots]
        to = f"{good.model_version.display_name} v{good.model_version.version}" if good else None
    else:
        affected = list(deployment.schools.all())
        district = services.district_deployment(deployment.district)
        to = (
            f"{district.model_version.display_name} v{district.model_version.version} "
            "(the district's version)"
            if district
            else "no model (the district has none)"
        )
    return {
        "from": f"{deployment.model_version.display_name} v{deployment.model_version.version}",
        "to": to,
        "schools": [s.name for s in affected],
        "possible": to is not None,
    }


def _visible_deployment(request: HttpRequest) -> Deployment:
    """The posted deployment among those the user may see: one of another district is a 404, the
    same answer as a deployment that does not exist (403 only for one they see but may not act on).
    """
    return get_object_or_404(
        Deployment.objects.filter(district__in=visible_districts(request.user)),
        pk=request.POST.get("deployment"),
    )


def _handle_post(request: HttpRequest, district: District) -> None:
    what = request.POST.get("do")
    reason = request.POST.get("reason", "").strip()
    try:
        if what == "rollback":
            deployment = _visible_deployment(request)
            require(request.user, Action.ROLL_BACK, deployment)
            rollout.rollback(deployment, user=request.user, reason=reason)
            messages.success(request, f"Rolled back deployment #{deployment.pk}.")
        elif what == "promote":
            pilot = _visible_deployment(request)
            require(request.user, Action.PROMOTE, pilot)
            rollout.promote(pilot, user=request.user, reason=reason)
            messages.success(request, f"{pilot.model_version} is now the district's version.")
        elif what == "token":
            require(request.user, Action.MANAGE_DATA, district)
            school = School.objects.filter(district=district, pk=request.POST.get("school") or 0)
            token, key = tokens.create(
                district, request.POST.get("name", ""), request.user, school.first()
            )
            messages.success(
                request,
                f"Token “{token.name}” created. Copy its key now, it is not shown again: {key}",
            )
        elif what == "revoke":
            token = get_object_or_404(
                IntegrationToken, pk=request.POST.get("token"), district=district
            )
            require(request.user, Action.MANAGE_DATA, token)
            tokens.revoke(token, request.user)
            messages.success(request, f"Token “{token.name}” revoked.")
        elif what == "rollout":
            require(request.user, Action.PROMOTE, district)
            model = get_object_or_404(
                ModelVersion, pk=request.POST.get("model_version"), district=district
            )
            schools = School.objects.filter(
                district=district, pk__in=request.POST.getlist("schools")
            )
            rollout.roll_out(
                model,
                scope=request.POST.get("scope", ""),
                schools=schools,
                user=request.user,
                reason=reason,
            )
            messages.success(request, f"Rolled out {model}.")
    except (services.DeploymentError, ValueError) as exc:
        messages.error(request, str(exc))


@login_required
def deployments_page(request: HttpRequest) -> HttpResponse:
    districts = list(visible_districts(request.user))
    if not districts:
        raise PermissionDenied(
            "Deployments are for district staff; teachers use their school page."
        )
    district = next(
        (d for d in districts if str(d.pk) == request.GET.get("district")), districts[0]
    )
    if request.method == "POST":
        _handle_post(request, district)
        return redirect(f"{request.path}?district={district.pk}")
    deployments = Deployment.objects.filter(district=district).select_related(
        "model_version", "created_by", "ended_by"
    )
    active = [d for d in deployments if d.active]
    for d in active:
        d.plan = rollback_plan(d)
        d.may_roll_back = can(request.user, Action.ROLL_BACK, d)
        d.may_promote = d.scope == "pilot" and can(request.user, Action.PROMOTE, d)
    schools = [(s, services.resolve(s)) for s in district.schools.order_by("name")]
    servable = [
        m
        for m in ModelVersion.objects.filter(district=district).order_by("-created_at")
        if (m.bundle or {}).get("manifest")
    ]
    return TemplateResponse(
        request,
        "deployments/list.html",
        {
            "district": district,
            "districts": districts,
            "active": active,
            "history": deployments[:50],
            "schools": schools,
            "servable": servable,
            "may_roll_out": can(request.user, Action.PROMOTE, district),
            "may_manage_tokens": can(request.user, Action.MANAGE_DATA, district),
            "tokens": IntegrationToken.objects.filter(district=district).select_related("school"),
        },
    )


@login_required
def school_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """The Rollback button on a school page."""
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    require(request.user, Action.ROLL_BACK, school)
    if request.method == "POST":
        try:
            rollout.rollback_school(
                school, user=request.user, reason=request.POST.get("reason", "")
            )
            messages.success(request, f"{school} is back on its previous version.")
        except services.DeploymentError as exc:
            messages.error(request, str(exc))
    return redirect("school", pk=school.pk)
