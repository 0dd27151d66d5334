"""The mastery check: after a knowledge-tracing model is retrained, compare its BKT parameters
per skill with the previous version of the same registered model (the highest version number
below it in the district) and flag the ones that moved more than their tolerance
(`parameter_drift`), then look at the new version alone for skills whose items are too easy, too
hard or whose fit is degenerate (`item_difficulty_check`). Each flagged skill gets one alert
naming the parameter, old → new and what to do; the report keeps every compared parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from edumlops.ml.knowledge_tracing_checks import (
    DRIFT_TOLERANCE,
    item_difficulty_check,
    parameter_drift,
)
from edumlops.monitoring.checks.params import CheckError, CheckParams
from edumlops.monitoring.models import Alert
from edumlops.monitoring.services import raise_alert
from edumlops.registry.mastery import MasteryError, load_mastery_model
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District

MONITOR = "mastery"


def _tolerance(parameter: str) -> Any:
    return Field(
        DRIFT_TOLERANCE[parameter],
        ge=0,
        lt=1,
        description=(
            f"Flag a skill whose {parameter} moved by more than this (absolute probability) "
            "from the previous version."
        ),
        json_schema_extra={"threshold": "district", "label": f"Allowed change of {parameter}"},
    )


class MasteryParams(CheckParams):
    prior_tolerance: float = _tolerance("prior")
    learn_tolerance: float = _tolerance("learn")
    guess_tolerance: float = _tolerance("guess")
    slip_tolerance: float = _tolerance("slip")
    forget_tolerance: float = _tolerance("forget")
    max_guess: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A skill whose guess is above this has items too easy to show mastery.",
        json_schema_extra={"threshold": "district", "label": "Highest guess"},
    )
    max_slip: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A skill whose slip is above this has items too hard or mis-keyed.",
        json_schema_extra={"threshold": "district", "label": "Highest slip"},
    )
    min_learn: float = Field(
        0.01,
        ge=0,
        le=1,
        description="A skill whose learn rate is below this: practice barely moves mastery.",
        json_schema_extra={"threshold": "district", "label": "Lowest learn rate"},
    )

    @property
    def tolerances(self) -> dict[str, float]:
        return {p: getattr(self, f"{p}_tolerance") for p in DRIFT_TOLERANCE}


@dataclass
class SkillCheck:
    skill: str
    reasons: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # flagged parameter moves
    difficulty: list[dict[str, Any]] = field(default_factory=list)  # item flags
    alert: Alert | None = None
    new_alert: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "skill": self.skill,
            "reasons": self.reasons,
            "changes": self.changes,
            "difficulty": self.difficulty,
            "alert": self.alert.pk if self.alert else None,
        }


@dataclass
class MasteryResult:
    model: ModelVersion
    previous: ModelVersion | None
    parameters: list[dict[str, Any]] = field(default_factory=list)  # every compared parameter
    skills: list[SkillCheck] = field(default_factory=list)  # the flagged skills
    log: list[str] = field(default_factory=list)

    @property
    def new_alerts(self) -> int:
        return sum(s.new_alert for s in self.skills)

    @property
    def drifted(self) -> int:
        return sum(1 for p in self.parameters if p["flagged"])

    def report(self) -> dict[str, Any]:
        return {
            "model_version": self.model.pk,
            "model": str(self.model),
            "previous_version": self.previous.pk if self.previous else None,
            "previous": str(self.previous) if self.previous else None,
            "summary": {
                "skills": len({p["skill"] for p in self.parameters}) if self.parameters else None,
                "parameters_compared": len(self.parameters),
                "parameters_drifted": self.drifted,
                "skills_flagged": len(self.skills),
                "new_alerts": self.new_alerts,
            },
            "parameters": self.parameters,
            "results": [s.as_dict() for s in self.skills],
        }


def previous_version(model: ModelVersion) -> ModelVersion | None:
    """The highest version number below `model`'s of the same registered name in its district."""
    below = []
    for other in ModelVersion.objects.filter(district=model.district, name=model.name).exclude(
        pk=model.pk
    ):
        try:
            number = int(other.version)
        except ValueError:
            continue
        below.append((number, other))
    try:
        mine = int(model.version)
    except ValueError:
        return None
    below = [(n, m) for n, m in below if n < mine]
    return max(below, key=lambda pair: pair[0])[1] if below else None


def _load(model: ModelVersion) -> Any:
    try:
        return load_mastery_model(model)
    except MasteryError as exc:
        raise CheckError(str(exc)) from None


def check_mastery(district: District, model: ModelVersion, params: MasteryParams) -> MasteryResult:
    """Parameter drift against the previous version and the item check of `model`; one alert
    per flagged skill."""
    current = _load(model)
    previous = previous_version(model)
    result = MasteryResult(model=model, previous=previous)
    flagged: dict[str, SkillCheck] = {}
    if previous is not None:
        old = _load(previous)
        try:
            changes = parameter_drift(old, current, tolerance=params.tolerances)
        except ValueError as exc:
            raise CheckError(f"The tolerances cannot be used: {exc}") from None
        for change in changes:
            result.parameters.append({k: _round(v) for k, v in change.to_dict().items()})
            if change.flagged:
                skill = flagged.setdefault(change.skill, SkillCheck(change.skill))
                skill.changes.append({k: _round(v) for k, v in change.to_dict().items()})
                skill.reasons.append(change.reason)
    try:
        items = item_difficulty_check(
            current,
            max_guess=params.max_guess,
            max_slip=params.max_slip,
            min_learn=params.min_learn,
        )
    except ValueError as exc:
        raise CheckError(str(exc)) from None
    for flag in items:
        skill = flagged.setdefault(flag.skill, SkillCheck(flag.skill))
        skill.difficulty.append({k: _round(v) for k, v in flag.to_dict().items()})
        skill.reasons.append(flag.reason)
    for name in sorted(flagged):
        result.skills.append(flagged[name])
        _alert(district, model, previous, flagged[name])
    result.log = _log(result)
    return result


def _alert(
    district: District, model: ModelVersion, previous: ModelVersion | None, skill: SkillCheck
) -> None:
    degenerate = any(f["verdict"] == "degenerate" for f in skill.difficulty)
    moves = "; ".join(f"{c['parameter']} {_p(c['old'])} → {_p(c['new'])}" for c in skill.changes)
    parts = []
    if skill.changes:
        parts.append(
            f"its BKT parameters moved since {previous}: {moves}. Check whether the answers or "
            "the items of this skill changed (a new item bank, a changed answer key, another "
            "group of students) before the retrained model is used for mastery"
        )
    if skill.difficulty:
        parts.append(
            " ".join(f["reason"] for f in skill.difficulty)
            + " Review the skill's items with its teachers (replace guessable or mis-keyed "
            "items) and retrain"
        )
    alert, new = raise_alert(
        district=district,
        school=None,
        monitor=MONITOR,
        cause=f"mastery {model.name}: skill {skill.skill}"[:200],
        severity=Alert.Severity.CRITICAL if degenerate else Alert.Severity.WARNING,
        message=f"Skill '{skill.skill}' of {model}: " + ". ".join(parts) + ".",
    )
    skill.alert, skill.new_alert = alert, new


def _log(result: MasteryResult) -> list[str]:
    if result.previous is None:
        lines = [
            f"{result.model} has no previous version of {result.model.name} in the district: "
            "there is nothing to compare its parameters with; only the item check was run."
        ]
    else:
        compared = len({p["skill"] for p in result.parameters})
        lines = [
            f"{result.model} compared with {result.previous}: {compared} skills, "
            f"{result.drifted} of {len(result.parameters)} parameters moved past their tolerance."
        ]
    if not result.skills:
        lines.append("No skill flagged.")
    for skill in result.skills:
        state = (
            f"alert #{skill.alert.pk}{' (new)' if skill.new_alert else ' (refreshed)'}"
            if skill.alert
            else "ok"
        )
        lines.append(f"{skill.skill}: {' '.join(skill.reasons)} {state}")
    return lines


def _p(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
