"""The rules of a rollout: which schools pilot a model, and when a pilot may become the
district's version. The Pilot rollout and Promote to district blocks, the API and the
deployments page all call these functions, so the same rule holds at every door.

Promotion conditions: the deployment is an active pilot, it has run its minimum days (counted on
the platform clock, `edumlops.core.clock`), and every registered check holds. Apps above this one
register checks at start-up with `register_promotion_check` (monitoring registers "no open alert
on a pilot school"), so this module never imports them. The mechanics of each change (lock,
transaction, audit record) stay in `services`.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from edumlops.core import clock
from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.ml import evaluation
from edumlops.ml.datasets import Roles
from edumlops.ml.training import binary_target
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

DeploymentError = services.DeploymentError

# The minimum days a pilot runs before it may be promoted, when nothing names another number
# (the API and the page; the Promote to district block has its own parameter, default the same).
DEFAULT_MIN_PILOT_DAYS = 14
# Fewer labelled pilot rows than this are too few to compare with validation.
MIN_OUTCOME_ROWS = 30


@dataclass(frozen=True)
class Unmet:
    """A promotion condition that does not hold: what is wrong, and what to do about it
    (an imperative without the full stop, e.g. "resolve them"); each door says how to retry."""

    condition: str
    fix: str

    def sentence(self, then: str) -> str:
        """'<condition>. <Fix>, then <then>.'"""
        return f"{self.condition}. {self.fix[:1].upper()}{self.fix[1:]}, then {then}."


PromotionCheck = Callable[[Deployment, list[School]], Unmet | None]
_checks: list[PromotionCheck] = []


def register_promotion_check(check: PromotionCheck) -> None:
    """Add a condition every promotion must meet: `check(pilot, schools)` returns None when it
    holds, else an Unmet. Called from an AppConfig.ready(); registering twice is harmless."""
    if check not in _checks:
        _checks.append(check)


def promotion_checks() -> tuple[PromotionCheck, ...]:
    return tuple(_checks)


class NotPromotable(DeploymentError):
    """A promotion refused because conditions do not hold; the message names each and its fix."""

    def __init__(self, pilot: Deployment, unmet: list[Unmet]) -> None:
        self.unmet = unmet
        reasons = "; ".join(f"{u.condition} ({u.fix})" for u in unmet)
        super().__init__(
            f"Pilot #{pilot.pk} cannot be promoted yet: {reasons}. Promote it once these hold."
        )


# --- choosing the pilot schools ------------------------------------------------------------


@dataclass(frozen=True)
class SchoolChoice:
    """How the pilot schools are chosen: `names` (names or codes), `tag`, or a `stratified`
    sample with one school per size band and locality, `sample_size` at most."""

    selection: str = "stratified"
    names: tuple[str, ...] = ()
    tag: str = "pilot"
    sample_size: int = 3
    seed: int = 0


def choose_schools(district: District, choice: SchoolChoice) -> list[School]:
    schools = list(district.schools.order_by("name"))
    if choice.selection == "names":
        wanted = {s.strip().lower() for s in choice.names if s.strip()}
        chosen = [s for s in schools if s.name.lower() in wanted or s.code.lower() in wanted]
        found = {s.name.lower() for s in chosen} | {s.code.lower() for s in chosen}
        unknown = sorted(wanted - found)
        if unknown:
            raise DeploymentError(
                f"No school named {', '.join(unknown)} in {district}: use names or codes from "
                "the district page."
            )
        return chosen
    if choice.selection == "tag":
        return [s for s in schools if choice.tag in (s.tags or [])]
    cells: dict[tuple[str, str], list[School]] = {}
    for s in schools:
        cells.setdefault((s.size_band, s.locality), []).append(s)
    rng = random.Random(choice.seed)
    picks = [rng.choice(group) for _, group in sorted(cells.items())]
    rng.shuffle(picks)
    return sorted(picks[: choice.sample_size], key=lambda s: s.name)


@dataclass(frozen=True)
class PilotAsApproved:
    """A pilot proposal's model version and schools as they are now, and what changed since."""

    model: ModelVersion | None
    schools: list[School]
    changes: list[str]


def pilot_as_approved(
    district: District,
    model_version: int,
    model_label: str,
    bias_outcome: str | None,
    schools: dict[int, str],
) -> PilotAsApproved:
    """Look up an approved pilot (model version id, school ids → names) without choosing
    anew: a deleted model or school, or a bias check failed since, is a change."""
    model = ModelVersion.objects.filter(pk=model_version, district=district).first()
    changes = []
    if model is None:
        changes.append(f"{model_label} was deleted")
    elif model.bias_outcome == "fail" and bias_outcome != "fail":
        changes.append(f"{model} has failed a bias check since")
    found = {s.pk: s for s in district.schools.filter(pk__in=schools)}
    gone = [name for pk, name in schools.items() if pk not in found]
    if gone:
        changes.append(
            f"{', '.join(gone)} no longer {'is' if len(gone) == 1 else 'are'} a school"
            f" of {district}"
        )
    return PilotAsApproved(model, [found[pk] for pk in schools if pk in found], changes)


# --- the operations, one door for the blocks, the API and the page ---------------------------


# Starting a pilot or a district rollout and rolling back have no extra conditions: the
# services are the one door (named here so the blocks, the API and the page all say rollout.*).
roll_out = services.roll_out
rollback = services.rollback
rollback_school = services.rollback_school


def promote(
    pilot: Deployment,
    *,
    min_days: int = DEFAULT_MIN_PILOT_DAYS,
    user: Any = None,
    reason: str = "",
    run: Any = None,
) -> Deployment:
    """The pilot's version becomes the district's — only when every promotion condition holds;
    otherwise NotPromotable names each unmet one."""
    if pilot.scope != Deployment.Scope.PILOT or not pilot.active:
        raise DeploymentError("Only an active pilot can be promoted to the district.")
    unmet = unmet_conditions(pilot, min_days)
    if unmet:
        raise NotPromotable(pilot, unmet)
    return services.promote(pilot, user=user, reason=reason, run=run)


# --- promotion conditions ------------------------------------------------------------------


@dataclass(frozen=True)
class PilotAge:
    """How long a pilot has run on the platform clock, against its minimum days."""

    days: float
    min_days: int
    due: dt.datetime  # real time at which the minimum is reached

    @property
    def enough(self) -> bool:
        return self.days >= self.min_days

    @property
    def seconds_left(self) -> float:
        return max(0.0, (self.min_days - self.days) * 86400)

    @property
    def due_text(self) -> str:
        return f"{timezone.localtime(self.due):%d %b %Y %H:%M}"


def pilot_age(pilot: Deployment, min_days: int) -> PilotAge:
    days = (clock.now() - pilot.created_at).total_seconds() / 86400
    due = pilot.created_at - clock.offset() + dt.timedelta(days=min_days)
    return PilotAge(days=days, min_days=min_days, due=due)


def checks_unmet(pilot: Deployment, schools: list[School] | None = None) -> list[Unmet]:
    """The registered checks that do not hold for this pilot."""
    schools = list(pilot.schools.all()) if schools is None else schools
    return [u for check in _checks if (u := check(pilot, schools)) is not None]


def unmet_conditions(pilot: Deployment, min_days: int = DEFAULT_MIN_PILOT_DAYS) -> list[Unmet]:
    """Every promotion condition that does not hold now: the minimum days, then the checks."""
    unmet = []
    age = pilot_age(pilot, min_days)
    if not age.enough:
        unmet.append(
            Unmet(
                f"the pilot has run {age.days:.1f} of its {min_days} days",
                f"wait until {age.due_text}, or roll the pilot back",
            )
        )
    return unmet + checks_unmet(pilot)


# --- pilot outcomes (the Promote block's optional condition) -------------------------------


@dataclass(frozen=True)
class OutcomeVerdict:
    """The pilot schools' labelled outcomes compared with validation: `held` or not, the
    sentence to show, and the metric measured on the pilot (None when not measured)."""

    held: bool
    message: str
    observed: float | None = None


def judge_outcomes(
    pilot: Deployment, frame: Any, roles: Roles, metric: str, max_drop: float
) -> OutcomeVerdict:
    """Score the pilot schools' labelled rows with the pilot's model; it holds when the metric
    is at most `max_drop` below the one measured in validation."""
    if not roles.label:
        raise DeploymentError(
            "The pilot outcomes have no label marked: mark it on the dataset page."
        )
    if roles.school and roles.school in frame:
        schools = list(pilot.schools.all())
        names = {s.name for s in schools} | {s.code for s in schools}
        frame = frame[frame[roles.school].astype(str).isin(names)]
    if len(frame) < MIN_OUTCOME_ROWS:
        return OutcomeVerdict(
            False,
            f"only {len(frame)} labelled row(s) from the pilot schools: too few to judge; wait "
            "for more outcomes",
        )
    model = pilot.model_version
    y = binary_target(frame[roles.label], roles.positive)
    measured = evaluation.evaluate(y, model.predict_proba(frame), threshold=model.threshold)
    validated = ((model.validation or {}).get("metrics") or {}).get(metric)
    observed = measured.get(metric)
    if validated is None or observed is None:
        return OutcomeVerdict(
            False,
            f"{metric} cannot be compared: the model was not validated, or the pilot's rows "
            "hold one class only",
        )
    verdict = f"{metric} on {len(frame)} pilot rows {observed:.3f} vs {validated:.3f} in validation"
    if validated - observed > max_drop:
        return OutcomeVerdict(False, f"{verdict}: more than {max_drop:g} lower", observed)
    return OutcomeVerdict(True, f"{verdict}: within {max_drop:g}", observed)
