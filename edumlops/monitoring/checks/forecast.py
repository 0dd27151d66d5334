"""The forecast error check: when actual enrollment arrives (the counts of a term that has
started, uploaded as a dataset), compare it with what a forecast model version said for that
term. Each school whose counts fall outside the forecast's interval or miss by more than the
tolerance gets one alert naming the grades and terms; the report keeps every compared row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import Field

from edumlops.ml.forecast import forecast_error
from edumlops.monitoring.checks.params import CheckError, CheckParams
from edumlops.monitoring.models import Alert
from edumlops.monitoring.services import raise_alert
from edumlops.registry.forecasts import ForecastError, load_forecast
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

MONITOR = "forecast"
NEEDED = ("school", "year", "term", "enrollment")


class ForecastErrorParams(CheckParams):
    tolerance: float = Field(
        0.1,
        gt=0,
        le=1,
        description=(
            "Flag a count that misses the forecast by more than this share of the actual "
            "count (0.1 = 10%), even inside the interval; a count outside the interval is "
            "always flagged."
        ),
        json_schema_extra={"threshold": "district", "label": "Allowed error (share of actual)"},
    )
    min_flagged: int = Field(
        1,
        ge=1,
        le=1000,
        description="Raise a school's alert once this many of its counts are flagged.",
        json_schema_extra={"label": "Flagged counts before an alert", "unit": "counts"},
    )


@dataclass
class SchoolError:
    school: str
    compared: int
    flagged: int
    total_point: float
    total_actual: float
    reasons: list[str]
    alert: Alert | None = None
    new_alert: bool = False

    @property
    def total_error(self) -> float | None:
        if not self.total_actual:
            return None
        return abs(self.total_actual - self.total_point) / self.total_actual

    def as_dict(self) -> dict[str, Any]:
        return {
            "school": self.school,
            "compared": self.compared,
            "flagged": self.flagged,
            "forecast": round(self.total_point, 1),
            "actual": self.total_actual,
            "total_error": None if self.total_error is None else round(self.total_error, 4),
            "reasons": self.reasons[:20],
            "alert": self.alert.pk if self.alert else None,
        }


@dataclass
class ForecastErrorResult:
    model: ModelVersion
    summary: dict[str, Any]
    schools: list[SchoolError] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def new_alerts(self) -> int:
        return sum(s.new_alert for s in self.schools)

    def report(self) -> dict[str, Any]:
        return {
            "model_version": self.model.pk,
            "model": str(self.model),
            "summary": self.summary,
            "results": [s.as_dict() for s in self.schools],
        }


def _actuals(frame: pd.DataFrame, by_grade: bool) -> pd.DataFrame:
    needed = [*NEEDED[:1], *(["grade"] if by_grade else []), *NEEDED[1:]]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise CheckError(
            f"The actual enrollment has no column(s) {', '.join(missing)}: upload one row per "
            f"school{', grade' if by_grade else ''} and term with the columns "
            f"{', '.join(needed)} (the format of the history the forecast was trained on)."
        )
    if frame.empty:
        raise CheckError("The actual enrollment has no rows: upload the counts of a term.")
    return frame


def _same_types(forecasts: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """Actual keys in the forecast's types (a grade read as text, a year as a float)."""
    out = actuals.copy()
    for column in ("school", "grade", "term"):
        if column in out and column in forecasts:
            out[column] = out[column].astype(str).str.strip()
            forecasts[column] = forecasts[column].astype(str).str.strip()
    year = pd.to_numeric(out["year"], errors="coerce")
    if year.isna().any() or (year % 1 != 0).any():
        raise CheckError(
            "The actual enrollment's year column must hold the school year's first year "
            "(e.g. 2026 for 2026-27) in every row."
        )
    out["year"] = year.astype(int)
    forecasts["year"] = pd.to_numeric(forecasts["year"]).astype(int)
    return out


def check_forecast_error(
    district: District,
    model: ModelVersion,
    actuals: pd.DataFrame,
    params: ForecastErrorParams,
) -> ForecastErrorResult:
    """Compare the actual counts with the forecast of `model` and alert per school."""
    try:
        forecasts = load_forecast(model)
    except ForecastError as exc:
        raise CheckError(str(exc)) from None
    by_grade = "grade" in forecasts.columns
    actual = _same_types(forecasts, _actuals(actuals, by_grade))
    try:
        report = forecast_error(forecasts, actual, tolerance=params.tolerance)
    except ValueError as exc:
        raise CheckError(f"The actual enrollment cannot be compared: {exc}") from None
    summary = {k: _plain(v) for k, v in report.summary.items()}
    result = ForecastErrorResult(model=model, summary=summary)
    table = report.table
    if table.empty:
        periods = forecasts.drop_duplicates(["year", "term"])["period"].astype(str).tolist()
        raise CheckError(
            f"None of the actual counts is for a term {model} forecast ({', '.join(periods)}), "
            "or their schools are not the forecast's: upload the counts of one of those terms."
        )
    schools = {s.name: s for s in district.schools.all()} | {
        s.code: s for s in district.schools.all()
    }
    for name, rows in table.groupby(table["school"].astype(str), sort=True):
        flagged = rows[rows["flag"]]
        checked = SchoolError(
            school=name,
            compared=len(rows),
            flagged=len(flagged),
            total_point=float(rows["point"].sum()),
            total_actual=float(rows["actual"].sum()),
            reasons=[_where(row) + ": " + row.flag_reason for row in flagged.itertuples()],
        )
        result.schools.append(checked)
        if checked.flagged >= params.min_flagged:
            _alert(district, schools.get(name), model, checked, params)
    result.log = _log(result, params)
    return result


def _where(row: Any) -> str:
    grade = f"grade {row.grade} " if hasattr(row, "grade") else ""
    return f"{grade}{getattr(row, 'period', '') or f'{row.year} {row.term}'}".strip()


def _alert(
    district: District,
    school: School | None,
    model: ModelVersion,
    checked: SchoolError,
    params: ForecastErrorParams,
) -> None:
    error = checked.total_error
    severe = error is not None and error > 2 * params.tolerance
    where = "" if school is not None else f"{checked.school} (not a school of the district): "
    total = (
        f"all grades together {checked.total_actual:,.0f} against {checked.total_point:,.0f} "
        f"forecast ({error:.0%} off)"
        if error is not None
        else f"all grades together {checked.total_actual:,.0f} against "
        f"{checked.total_point:,.0f} forecast"
    )
    alert, new = raise_alert(
        district=district,
        school=school,
        monitor=MONITOR,
        cause=f"enrollment forecast {model.name}"[:200],
        severity=Alert.Severity.CRITICAL if severe else Alert.Severity.WARNING,
        message=(
            f"{where}{checked.flagged} of {checked.compared} enrollment counts miss the "
            f"forecast of {model}: {'; '.join(checked.reasons[:5])}"
            f"{' …' if len(checked.reasons) > 5 else ''}. {total}. Retrain the forecast with "
            "the new counts (the enrollment template retrains at each term start)."
        ),
    )
    checked.alert, checked.new_alert = alert, new


def _log(result: ForecastErrorResult, params: ForecastErrorParams) -> list[str]:
    s = result.summary
    lines = [
        f"{s['compared']} actual counts compared with the forecast of {result.model}: "
        f"{s['flagged']} flagged (outside the interval or more than {params.tolerance:.0%} off)"
        + (f", MAPE {s['mape']:.1%}" if s.get("mape") is not None else "")
        + (f", {s['coverage']:.0%} inside the interval" if s.get("coverage") is not None else "")
    ]
    if s.get("pending"):
        lines.append(f"{s['pending']} forecast counts have no actual yet (later terms).")
    if s.get("unmatched"):
        lines.append(
            f"{s['unmatched']} counts are for terms, schools or grades the forecast does not "
            "cover (the earlier history): left out."
        )
    for checked in result.schools:
        state = (
            f"alert #{checked.alert.pk}{' (new)' if checked.new_alert else ' (refreshed)'}"
            if checked.alert
            else "ok"
        )
        lines.append(f"{checked.school}: {checked.flagged} of {checked.compared} flagged, {state}")
    return lines


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
