"""The deployments page: which version each school gets, roll out, promote, and the Rollback
button (its dialog says exactly what will change); and "Try a student" on the school page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.deployments import rollout, services, serving, tokens
from edumlops.deployments.models import Deployment, IntegrationToken
from edumlops.ml import onnx_bundle
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


# --- "Try a student" on the school page ---------------------------------------------------------

BANDS = {"high": "High risk", "medium": "Medium risk", "low": "Low risk"}


@dataclass
class TryField:
    name: str
    kind: str  # "numeric" or "categorical"
    value: str  # as typed
    low: float | None = None  # numeric: the range seen in the training data
    high: float | None = None
    middle: bool = False  # low and high hold 8 in 10 training rows (not the whole range)
    choices: list[str] = field(default_factory=list)  # categorical: the categories seen
    error: str = ""

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


def _number_text(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else f"{x:.0f}"


def _try_fields(version: ModelVersion, model: serving.ServingModel) -> list[TryField]:
    """The form's fields, from the served model's features: numbers with the range and a typical
    value of the training data, categories with those the model saw."""
    stats = {}
    if version.dataset_version_id is not None:
        stats = {c["name"]: c.get("stats") or {} for c in version.dataset_version.schema or []}
    reference = version.drift_reference or {}
    out = []
    for name in model.numeric:
        s = stats.get(name, {})
        low, high, mean = s.get("min"), s.get("max"), s.get("mean")
        typical = "" if mean is None else _number_text(round(float(mean), 2))
        edges = (reference.get(name) or {}).get("edges") or []
        if low is None and len(edges) >= 2:  # no dataset profile: the drift bins' deciles
            out.append(TryField(name, "numeric", "", edges[0], edges[-1], middle=True))
        else:
            out.append(TryField(name, "numeric", typical, low, high))
    for name in model.categorical:
        choices = model.categories.get(name) or (reference.get(name) or {}).get("categories") or []
        out.append(TryField(name, "categorical", "", choices=sorted(map(str, choices))))
    return out


def _row_from(fields: list[TryField], data: dict) -> dict:
    """The posted form as the predict API's row: empty is null (unknown), a number is a number
    and anything else is sent as typed, for the API's own checks to name."""
    row: dict = {}
    for f in fields:
        text = str(data.get(f.name, "")).strip()
        f.value = text
        if not text:
            row[f.name] = None
        elif f.kind == "numeric":
            try:
                number = float(text)
            except ValueError:
                number = None
            ok = number is not None and math.isfinite(number)
            row[f.name] = (int(number) if number.is_integer() else number) if ok else text
        else:
            row[f.name] = text
    return row


@login_required
def try_student(request: HttpRequest, pk: int) -> HttpResponse:
    """Score one made-up student with the school's model, through the predict API's own checks
    and scoring (serving.score); nothing is recorded, so monitoring never counts it."""
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    require(request.user, Action.VIEW, school)
    context: dict = {"school": school, "bands": BANDS}
    deployment = services.resolve(school)
    context["deployment"] = deployment
    model = None
    if deployment is not None:
        try:
            model = serving.CACHE.get(deployment.model_version)
        except (serving.RequestError, onnx_bundle.BundleError) as exc:
            context["unavailable"] = f"The model cannot be tried: {exc}"
    if model is not None:
        fields = _try_fields(deployment.model_version, model)
        context["fields"] = fields
        if request.method == "POST":
            row = _row_from(fields, request.POST)
            try:
                answers, _, warnings = serving.score(model, [row], "row")
            except serving.RequestError as exc:
                by_feature = {
                    e.get("feature"): e["message"].replace("null if unknown", "leave it empty")
                    for e in exc.errors
                }
                for f in fields:
                    f.error = by_feature.get(f.name, "")
                context["problem"] = (
                    f"This student could not be scored: fix the {len(exc.errors)} field(s) "
                    "marked above."
                    if exc.errors
                    else str(exc)
                )
            else:
                answer = answers[0]
                if "top_features" not in answer:  # not linear: measure each feature's effect
                    answer["top_features"] = serving.explain_by_substitution(model, row)
                    answer["measured"] = True
                for reason in answer.get("top_features", []):
                    reason["label"] = reason["feature"].replace("_", " ")
                    value = row.get(reason["feature"])
                    reason["value"] = "unknown" if value is None else value
                context.update(
                    answer=answer,
                    warnings=warnings,
                    band_label=BANDS.get(answer["risk_band"], answer["risk_band"]),
                    percent=f"{100 * answer['probability']:.1f}",
                    algorithm=deployment.model_version.algorithm.replace("_", " "),
                )
    template = "deployments/try_student.html"
    if request.htmx:
        template += "#card"
    return TemplateResponse(request, template, context)
