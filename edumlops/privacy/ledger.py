"""Spending the privacy budget: every differentially private release goes through `spend`.

A release is charged to its cohort (a dataset, or the district's live predictions) and to the
school year in force on the district's academic calendar. The year turns when the first term of
the next school year starts — not on 1 January, not on 1 September — so a cohort's budget resets
exactly when its students start a new year. Without a calendar, a school year starts in August.

`spend` locks the budget row, checks the release against the most one release may take and
what is left this year, and appends the release to the ledger and to the audit chain in one
transaction: a refused release writes nothing, and two releases cannot both take the last ε.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.core import clock
from edumlops.datasets.models import Dataset
from edumlops.privacy.models import PrivacyBudget, PrivacyRelease
from edumlops.schools.calendar import school_year_of
from edumlops.schools.models import District

# ε are compared with this slack, so 0.1 + 0.2 + ... adding up to the total is not refused.
EPS_SLACK = 1e-9


class BudgetExceeded(Exception):
    """A release would spend more than the cohort has left this school year (or more than one
    release may spend). The message says how much is left and what to do."""

    def __init__(self, message: str, *, remaining: float, requested: float) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.requested = requested


def school_year(district: District, day: dt.date | None = None) -> int:
    """The school year `day` belongs to on the district's calendar: that of the latest term that
    started on or before it (2026 = the year 2026–27)."""
    day = day or clock.today()
    start = (
        district.terms()
        .filter(start__lte=day)
        .order_by("-start")
        .values_list("start", flat=True)
        .first()
    )
    return school_year_of(start if start is not None else day)


def next_year_starts(district: District, day: dt.date | None = None) -> dt.date | None:
    """The day the next school year starts on the calendar (when the budget resets), if the
    calendar goes that far."""
    day = day or clock.today()
    year = school_year(district, day)
    for start in (
        district.terms().filter(start__gt=day).order_by("start").values_list("start", flat=True)
    ):
        if school_year_of(start) > year:
            return start
    return None


def budget_for(district: District, dataset: Dataset | None) -> PrivacyBudget:
    """The cohort's own budget, else the district's default (created with the defaults)."""
    if dataset is not None:
        own = PrivacyBudget.objects.filter(district=district, dataset=dataset).first()
        if own is not None:
            return own
    default, _ = PrivacyBudget.objects.get_or_create(district=district, dataset=None)
    return default


def spent(district: District, dataset: Dataset | None, year: int | None = None) -> float:
    year = school_year(district) if year is None else year
    total = PrivacyRelease.objects.filter(
        district=district, dataset=dataset, school_year=year
    ).aggregate(total=Sum("epsilon"))["total"]
    return float(total or 0.0)


def remaining(district: District, dataset: Dataset | None, year: int | None = None) -> float:
    budget = budget_for(district, dataset)
    return max(0.0, budget.total_epsilon - spent(district, dataset, year))


@dataclass(frozen=True)
class Standing:
    """A cohort's budget this school year, for pages and the API."""

    dataset: Dataset | None
    school_year: int
    total: float
    spent: float
    max_per_release: float
    min_cell: int
    resets_on: dt.date | None
    own_budget: bool

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    @property
    def used_share(self) -> float:
        return min(1.0, self.spent / self.total) if self.total > 0 else 1.0

    @property
    def label(self) -> str:
        return str(self.dataset) if self.dataset is not None else "Live predictions"


def standing(district: District, dataset: Dataset | None, year: int | None = None) -> Standing:
    return standings(district, [dataset], year)[0]


def standings(
    district: District, datasets: list[Dataset | None], year: int | None = None
) -> list[Standing]:
    """The standing of each cohort; the calendar is read once for all of them."""
    year = school_year(district) if year is None else year
    resets_on = next_year_starts(district)
    result = []
    for dataset in datasets:
        budget = budget_for(district, dataset)
        result.append(
            Standing(
                dataset=dataset,
                school_year=year,
                total=budget.total_epsilon,
                spent=spent(district, dataset, year),
                max_per_release=budget.max_per_release,
                min_cell=budget.min_cell,
                resets_on=resets_on,
                own_budget=budget.dataset_id is not None,
            )
        )
    return result


def year_label(year: int) -> str:
    return f"{year}–{str(year + 1)[-2:]}"


def _lock(district: District, dataset: Dataset | None) -> PrivacyBudget:
    budget = budget_for(district, dataset)
    return PrivacyBudget.objects.select_for_update().get(pk=budget.pk)


def check(district: District, dataset: Dataset | None, epsilon: float) -> None:
    """Raise BudgetExceeded if a release of `epsilon` would be refused now (writes nothing)."""
    _refuse_if_over(budget_for(district, dataset), district, dataset, epsilon)


def _refuse_if_over(
    budget: PrivacyBudget, district: District, dataset: Dataset | None, epsilon: float
) -> float:
    if not epsilon or epsilon <= 0:
        raise ValueError("A differentially private release spends a positive ε.")
    year = school_year(district)
    left = max(0.0, budget.total_epsilon - spent(district, dataset, year))
    cohort = f'"{dataset}"' if dataset is not None else "the live predictions"
    if epsilon > budget.max_per_release + EPS_SLACK:
        raise BudgetExceeded(
            f"ε = {epsilon:g} is more than one release may spend (at most "
            f"{budget.max_per_release:g} for {cohort}); {left:.3g} of {budget.total_epsilon:g} is "
            f"left for school year {year_label(year)}. Use a smaller ε, or raise the maximum per "
            "release on the Privacy page.",
            remaining=left,
            requested=epsilon,
        )
    if epsilon > left + EPS_SLACK:
        resets = next_year_starts(district)
        when = (
            f" It resets on {resets:%-d %B %Y}, when the next school year starts." if resets else ""
        )
        raise BudgetExceeded(
            f"Not enough privacy budget: ε = {epsilon:g} asked, {left:.3g} of "
            f"{budget.total_epsilon:g} left for {cohort} in school year {year_label(year)}."
            f"{when} Use ε ≤ {left:.3g}, or raise the cohort's budget on the Privacy page.",
            remaining=left,
            requested=epsilon,
        )
    return left


def spend(
    *,
    district: District,
    dataset: Dataset | None,
    epsilon: float,
    kind: str,
    what: str,
    actor: Any,
    target: Any = None,
    delta: float = 0.0,
    mechanism: str = "",
    key: str = "",
    details: dict[str, Any] | None = None,
) -> PrivacyRelease:
    """Charge one release to the cohort's budget for this school year, or raise BudgetExceeded
    (nothing written). Runs inside the caller's transaction when there is one, so a release and
    what it released (a model version, a table) are written together or not at all."""
    if kind not in PrivacyRelease.Kind.values:
        raise ValueError(f"Unknown release kind '{kind}': use one of {PrivacyRelease.Kind.values}.")
    with transaction.atomic():
        budget = _lock(district, dataset)
        left = _refuse_if_over(budget, district, dataset, float(epsilon))
        year = school_year(district)
        user = actor if getattr(actor, "is_authenticated", False) else None
        name = user.get_username() if user else (str(actor) if actor else "system")
        target_type = target._meta.label_lower if target is not None else ""
        target_id = str(target.pk) if target is not None else ""
        release = PrivacyRelease(
            district=district,
            dataset=dataset,
            school_year=year,
            kind=kind,
            epsilon=float(epsilon),
            delta=float(delta),
            mechanism=mechanism[:120],
            what=what[:300],
            target_type=target_type,
            target_id=target_id,
            key=key[:200],
            details=details or {},
            actor=user,
            actor_name=name[:150],
            created_at=timezone.now(),
        )
        release.save()
        entry = audit.record(
            action=audit.AuditRecord.Action.PRIVACY_RELEASE,
            actor=actor,
            target=release,
            district=district,
            before={"remaining_epsilon": round(left, 6)},
            after={
                "epsilon": release.epsilon,
                "delta": release.delta,
                "kind": kind,
                "what": release.what,
                "cohort": str(dataset) if dataset is not None else "live predictions",
                "school_year": year,
                "remaining_epsilon": round(left - release.epsilon, 6),
                **({"released": f"{target_type}:{target_id}"} if target is not None else {}),
            },
        )
        PrivacyRelease.objects.filter(pk=release.pk).update(audit_record_id=entry.pk)
        release.audit_record_id = entry.pk
    return release


def published(district: District, dataset: Dataset | None, key: str) -> PrivacyRelease | None:
    """The release already published under `key` this school year, if any: a table is noised
    once and the same noisy numbers are shown to everyone after (post-processing is free)."""
    return (
        PrivacyRelease.objects.filter(
            district=district, dataset=dataset, key=key, school_year=school_year(district)
        )
        .order_by("-created_at")
        .first()
    )


def set_budget(
    *,
    district: District,
    dataset: Dataset | None,
    total_epsilon: float,
    max_per_release: float,
    min_cell: int | None,
    actor: Any,
) -> PrivacyBudget:
    """Set a cohort's budget (or the district default), audited as old → new."""
    if total_epsilon is None or total_epsilon < 0:
        raise ValueError("total_epsilon: the budget is a number of ε ≥ 0 (0 stops all releases).")
    if max_per_release is None or max_per_release <= 0:
        raise ValueError("max_per_release: the most one release may spend is a number above 0.")
    if min_cell is not None and min_cell < 1:
        raise ValueError("min_cell: the smallest count shown is a whole number of at least 1.")
    with transaction.atomic():
        budget = (
            PrivacyBudget.objects.select_for_update().filter(district=district, dataset=dataset)
        ).first() or PrivacyBudget(district=district, dataset=dataset)
        before = (
            {
                "total_epsilon": budget.total_epsilon,
                "max_per_release": budget.max_per_release,
                "min_cell": budget.min_cell,
            }
            if budget.pk
            else {}
        )
        budget.total_epsilon = float(total_epsilon)
        budget.max_per_release = float(max_per_release)
        if min_cell is not None:
            budget.min_cell = int(min_cell)
        budget.save()
        audit.record(
            action=audit.AuditRecord.Action.PRIVACY_BUDGET,
            actor=actor,
            target=budget,
            district=district,
            before=before,
            after={
                "cohort": str(dataset) if dataset is not None else "district default",
                "total_epsilon": budget.total_epsilon,
                "max_per_release": budget.max_per_release,
                "min_cell": budget.min_cell,
            },
        )
    return budget
