"""The Privacy page: each cohort's privacy budget this school year (or a past one), its ledger of
differentially private releases, and — for district admins — the form that sets the budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from edumlops.datasets.models import Dataset
from edumlops.monitoring.models import PerformanceCheck
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyBudget, PrivacyRelease
from edumlops.schools.models import District
from edumlops.schools.permissions import Action, can, visible_districts

BAR_WIDTH = 240  # px of the remaining-budget bar (an SVG: the page's CSP allows no inline style)


def privacy_districts(user: Any) -> list[District]:
    """The districts whose ledger the user may read (district staff and admins)."""
    return [d for d in visible_districts(user) if can(user, Action.VIEW_AUDIT, d)]


def _get_district_for_user(request: HttpRequest) -> District:
    districts = privacy_districts(request.user)
    if not districts:
        raise PermissionDenied("The privacy ledger is for district staff and admins.")
    wanted = request.GET.get("district") or request.POST.get("district")
    return next((d for d in districts if str(d.pk) == wanted), districts[0])


class BudgetForm(forms.Form):
    """A cohort's budget (or the district default). Each error names the field and the fix."""

    cohort = forms.ChoiceField(label="Cohort")
    total_epsilon = forms.FloatField(
        label="Total ε per school year",
        min_value=0,
        max_value=1000,
        error_messages={
            "required": "Total ε: give a number (0 stops all releases).",
            "invalid": "Total ε: give a number such as 4 or 0.5.",
            "min_value": "Total ε: use a number of at least 0 (0 stops all releases).",
            "max_value": "Total ε: use at most 1000.",
        },
    )
    max_per_release = forms.FloatField(
        label="Most ε one release may spend",
        max_value=1000,
        error_messages={
            "required": "Maximum per release: give a number above 0, such as 1.",
            "invalid": "Maximum per release: give a number above 0, such as 1.",
            "max_value": "Maximum per release: use at most 1000.",
        },
    )
    min_cell = forms.IntegerField(
        label="Smallest count shown (minimum cell size)",
        min_value=1,
        max_value=1000,
        error_messages={
            "required": "Minimum cell size: give a whole number of students, such as 10.",
            "invalid": "Minimum cell size: give a whole number of students, such as 10.",
            "min_value": "Minimum cell size: use a whole number of at least 1.",
            "max_value": "Minimum cell size: use at most 1000.",
        },
    )

    def __init__(self, *args: Any, district: District, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        datasets = Dataset.objects.filter(district=district).order_by("name")
        self.fields["cohort"].choices = [("default", "District default and live predictions")] + [
            (str(d.pk), str(d)) for d in datasets
        ]
        self.fields["cohort"].error_messages["invalid_choice"] = (
            "Cohort: choose the district default or one of this district's datasets."
        )

    def clean_max_per_release(self) -> float:
        value = self.cleaned_data["max_per_release"]
        if value <= 0:
            raise forms.ValidationError("Maximum per release: use a number above 0, such as 1.")
        return value


def eps(value: float) -> str:
    """ε as people read it: 2.5, 0.125, 4 (not 2.500)."""
    return f"{round(value, 3):g}"


@dataclass
class CohortRow:
    standing: ledger.Standing
    releases: list[PrivacyRelease]
    used_px: float
    cohort_id: str

    @property
    def numbers(self) -> dict[str, str]:
        s = self.standing
        return {
            "total": eps(s.total),
            "spent": eps(s.spent),
            "remaining": eps(s.remaining),
            "max": eps(s.max_per_release),
        }


def release_link(release: PrivacyRelease) -> str:
    """The page of what a release released, where there is one."""
    try:
        if release.target_type == "registry.modelversion":
            return reverse("model-card", args=[int(release.target_id)])
        if release.target_type == "monitoring.performancecheck":
            check = PerformanceCheck.objects.filter(pk=release.target_id).first()
            return reverse("school", args=[check.school_id]) if check else ""
    except (ValueError, NoReverseMatch):
        return ""
    return ""


@login_required
def privacy_page(request: HttpRequest) -> HttpResponse:
    district = _get_district_for_user(request)
    may_manage = can(request.user, Action.MANAGE, district)
    default = ledger.budget_for(district, None)
    form = BudgetForm(
        district=district,
        initial={
            "cohort": "default",
            "total_epsilon": default.total_epsilon,
            "max_per_release": default.max_per_release,
            "min_cell": default.min_cell,
        },
    )
    code = 200
    if request.method == "POST":
        if not may_manage:
            raise PermissionDenied("Only district admins set the privacy budgets.")
        form = BudgetForm(request.POST, district=district)
        if form.is_valid():
            data = form.cleaned_data
            cohort = data["cohort"]
            dataset = None if cohort == "default" else Dataset.objects.get(pk=int(cohort))
            try:
                ledger.set_budget(
                    district=district,
                    dataset=dataset,
                    total_epsilon=data["total_epsilon"],
                    max_per_release=data["max_per_release"],
                    min_cell=data["min_cell"],
                    actor=request.user,
                )
            except ValueError as exc:  # the ledger's own checks name the field first
                field, _, message = str(exc).partition(": ")
                form.add_error(field if field in form.fields else None, message or str(exc))
            else:
                name = str(dataset) if dataset else "the district default"
                messages.success(request, f"Privacy budget of {name} saved.")
                return redirect(f"{reverse('privacy')}?district={district.pk}")
        code = 400
    current = ledger.school_year(district)
    try:
        year = int(request.GET.get("year") or current)
    except ValueError:
        year = current
    cohorts: list[Dataset | None] = [None, *Dataset.objects.filter(district=district)]
    rows = []
    for dataset, standing in zip(cohorts, ledger.standings(district, cohorts, year), strict=True):
        releases = list(
            PrivacyRelease.objects.filter(district=district, dataset=dataset, school_year=year)
        )
        for r in releases:
            r.link = release_link(r)
            r.epsilon_text = eps(r.epsilon)
        rows.append(
            CohortRow(
                standing=standing,
                releases=releases,
                used_px=round(BAR_WIDTH * standing.used_share, 1),
                cohort_id=str(dataset.pk) if dataset else "default",
            )
        )
    years = sorted(
        {current, year}
        | set(
            PrivacyRelease.objects.filter(district=district)
            .values_list("school_year", flat=True)
            .distinct()
        ),
        reverse=True,
    )
    budgets = {
        (str(b.dataset_id) if b.dataset_id else "default"): b
        for b in PrivacyBudget.objects.filter(district=district)
    }
    return TemplateResponse(
        request,
        "privacy/page.html",
        {
            "district": district,
            "districts": privacy_districts(request.user),
            "rows": rows,
            "year": year,
            "year_label": ledger.year_label(year),
            "current_year": current,
            "years": [(y, ledger.year_label(y)) for y in years],
            "form": form,
            "may_manage": may_manage,
            "budgets": budgets,
            "bar_width": BAR_WIDTH,
        },
        status=code,
    )
