"""The monitoring checks called directly (no block, no workflow run), on data each test makes, in
real PostgreSQL with real models: drift per group (pooled small schools, per-school
sensitivity, edge aggregates, the calendar's seasonal baseline), performance on outcomes, and
device latency against each profile's own normal."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from django.utils import timezone

from edumlops.core import clock
from edumlops.deployments import services
from edumlops.deployments.models import Prediction
from edumlops.ml import drift
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.monitoring.checks import (
    CheckError,
    DriftParams,
    LatencyParams,
    PerformanceParams,
    check_drift,
    check_latency,
    check_performance,
)
from edumlops.monitoring.checks.windows import Window, baseline_window
from edumlops.monitoring.models import Alert, DailyAggregate, DriftCheck, PerformanceCheck
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import CalendarPeriod, District
from tests.conftest import _school
from tests.deployments.conftest import make_model

pytestmark = pytest.mark.django_db


def students(model, n, seed, *, attendance_shift=0.0):
    """n rows of the model's features drawn like its training rows; attendance moved down."""
    frame = generate_district(30 * n, seed=seed).sample(n, random_state=seed)
    rows = [
        {k: (None if v != v else v) for k, v in row.items()}
        for row in frame[model.feature_spec().columns].to_dict("records")
    ]
    for row in rows:
        if attendance_shift and row["attendance_rate"] is not None:
            row["attendance_rate"] = max(0.0, row["attendance_rate"] - attendance_shift)
    return rows


def record(deployment, school, rows, days=None):
    """Recorded predictions of `school`, spread over `days` (default: today)."""
    made = Prediction.objects.bulk_create(
        Prediction(school=school, deployment=deployment, model_version=deployment.model_version,
                   features=row, probability=0.3, band="low", latency_ms=1.0)
        for row in rows
    )  # fmt: skip
    days = days or [clock.today()]
    for i, day in enumerate(days):
        at = timezone.make_aware(dt.datetime.combine(day, dt.time(12)))
        Prediction.objects.filter(pk__in=[p.pk for p in made[i :: len(days)]]).update(created_at=at)


@pytest.fixture
def plain(db):
    """A district without a calendar: no day of any window is a break, whatever today is."""
    return District.objects.create(name="Plain Valley", slug="plain")


def drift_alerts():
    return sorted(
        (a.school.code, a.cause, a.severity) for a in Alert.objects.filter(monitor="drift")
    )


# --- drift ------------------------------------------------------------------------------------
def test_no_deployed_model_is_an_error_that_says_so(district, school_a):
    with pytest.raises(CheckError, match="No model is deployed in this district"):
        check_drift(district, DriftParams())


def test_small_schools_of_a_locality_are_checked_together(ml_stores, plain):
    """Three small rural schools with 15 predictions each: pooled (45 rows) they show the drop in
    attendance; each member gets its own alert naming the pool, and its own stored check."""
    district = plain
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district")
    school_a = _school(district, "a", "Alder School")
    record(deployment, school_a, students(model, 300, seed=4))
    small = [_school(district, f"r{i}", f"Rural {i}", locality="rural") for i in range(3)]
    for i, school in enumerate(small):
        record(deployment, school, students(model, 15, seed=20 + i, attendance_shift=0.3))
    # one small school asks for a more sensitive check: the pool uses the smallest value
    params = DriftParams(baseline="training", school_thresholds={"r1": {"psi_threshold": 0.05}})

    result = check_drift(district, params, run_id=7)

    by_group = {g.group: g for g in result.groups}
    assert set(by_group) == {school_a.name, "rural (pooled)"}
    pooled = by_group["rural (pooled)"]
    assert [s.code for s in pooled.schools] == ["r0", "r1", "r2"]
    assert pooled.status == "drift" and "attendance_rate" in pooled.drifted
    assert pooled.predictions == 45 and pooled.baseline == "the training data"
    assert by_group[school_a.name].status == "no_drift" and not by_group[school_a.name].alerts
    psi = next(f["psi"] for f in pooled.features if f["name"] == "attendance_rate")
    severity = "critical" if psi > 2.5 * 0.05 else "warning"
    assert ("r0", "attendance_rate", severity) in drift_alerts()
    assert {a.school.code for a in pooled.alerts} == {"r0", "r1", "r2"}
    assert all(a.message.endswith(" in rural (pooled).") for a in pooled.alerts)
    assert result.new_alerts == len(pooled.alerts) == Alert.objects.count()
    stored = DriftCheck.objects.filter(group="rural (pooled)", run_id=7)
    assert sorted(c.school.code for c in stored) == ["r0", "r1", "r2"]
    assert result.log == [g.summary() for g in result.groups]
    assert "rural (pooled): drift (45 predictions against the training data)" in result.log[1]
    report = result.report()
    assert report["window"] == [result.window.start.isoformat(), clock.today().isoformat()]
    assert report["results"][1]["schools"] == ["Rural 0", "Rural 1", "Rural 2"]

    again = check_drift(district, params)
    assert again.new_alerts == 0  # the open alerts are refreshed, not repeated
    assert {a.pk for a in again.groups[1].alerts} == {a.pk for a in pooled.alerts}


def test_unpooled_small_school_is_insufficient_data_not_no_drift(ml_stores, plain):
    model = make_model(plain, seed=0)
    deployment = services.roll_out(model, scope="district")
    tiny = _school(plain, "tiny", "Tiny School", locality="rural")
    record(deployment, tiny, students(model, 12, seed=5, attendance_shift=0.3))

    result = check_drift(plain, DriftParams(baseline="training", pool_small_schools=False))

    assert [(g.group, g.status, g.alerts) for g in result.groups] == [
        ("Tiny School", "insufficient_data", [])
    ]
    assert result.log == [
        "Tiny School: insufficient data (12 predictions against the training data)"
    ]


def test_edge_aggregates_stand_in_for_rows_on_both_sides(ml_stores, plain):
    """An edge school sends only daily histograms: the current window and the previous window
    are both read from them, and the same distribution is no drift."""
    district = plain
    school_a = _school(district, "a", "Alder School")
    model = make_model(district, seed=0)
    services.roll_out(model, scope="district")
    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    params = DriftParams(baseline="previous", window_days=7)
    window = Window.ending_today(district, 7)
    previous, _ = baseline_window("previous", window)
    for seed, day in ((3, window.end), (4, previous.end)):
        frame = pd.DataFrame(students(model, 200, seed=seed)).assign(__prediction__=0.3)
        DailyAggregate.objects.create(
            school=school_a, day=day, model_version=model, source="edge:n1", count=200,
            bands={"low": 200}, histograms=drift.histograms(reference, frame),
        )  # fmt: skip

    result = check_drift(district, params)

    (group,) = result.groups
    assert group.predictions == 200 and group.baseline == "the previous week"
    assert group.status == "no_drift" and not Alert.objects.exists()


@pytest.fixture
def calendar_district(db):
    """A district whose calendar is set around today: the current term began 40 days ago, last
    year's matching term 364 days before it, and a testing week sits in the current window."""
    today = clock.today()
    district = District.objects.create(name="Seasonal", slug="seasonal")
    start = today - dt.timedelta(days=40)
    for name, begin in (("This term", start), ("Last year", start - dt.timedelta(days=364))):
        CalendarPeriod.objects.create(district=district, kind="term", name=name, start=begin,
                                      end=begin + dt.timedelta(days=100))  # fmt: skip
    CalendarPeriod.objects.create(
        district=district, kind="testing", name="Tests", start=today - dt.timedelta(days=3),
        end=today - dt.timedelta(days=2),
    )  # fmt: skip
    return district


def test_seasonal_baseline_is_the_same_weeks_of_last_year(ml_stores, calendar_district, staff):
    """Every year attendance dips in these weeks: against the training data that is drift,
    against the same weeks of last year it is not. Rows of the testing week are left out."""
    district = calendar_district
    school = _school(district, "s", "Seasonal School")
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district", user=staff)
    window = Window.ending_today(district, 14)
    last_year, label = baseline_window("seasonal", window)
    assert label == f"the same weeks of {drift.school_year(last_year.start)}"
    assert label != f"the same weeks of {drift.school_year(window.start)}"
    assert last_year.start.weekday() == window.start.weekday()
    assert last_year.start < window.start - dt.timedelta(days=300)
    open_days = [d for d in _days(window) if not window.masked(d)]
    assert len(open_days) == 12  # the testing week's two days are masked
    record(deployment, school, students(model, 300, seed=3, attendance_shift=0.2), open_days)
    record(deployment, school, students(model, 300, seed=4, attendance_shift=0.2),
           _days(last_year))  # fmt: skip
    testing_week = [window.end - dt.timedelta(days=3), window.end - dt.timedelta(days=2)]
    record(deployment, school, students(model, 200, seed=6, attendance_shift=0.6), testing_week)

    seasonal = check_drift(district, DriftParams(baseline="seasonal"))
    (group,) = seasonal.groups
    assert group.baseline == label and group.predictions == 300
    assert group.status == "no_drift", group.features
    assert not Alert.objects.exists()

    training = check_drift(district, DriftParams(baseline="training"))
    assert "attendance_rate" in training.groups[0].drifted
    assert [a.cause for a in training.groups[0].alerts] == ["attendance_rate"]
    said = training.groups[0].alerts[0].message
    assert "against the training data;" in said and "last year" not in said
    assert "(PSI above 0.2" in said or "(Jensen–Shannon above 0.1" in said  # the rule that decided


def test_seasonal_baseline_without_last_years_rows_is_the_training_data(
    ml_stores, calendar_district, staff
):
    school = _school(calendar_district, "s", "Seasonal School")
    model = make_model(calendar_district, seed=0)
    deployment = services.roll_out(model, scope="district", user=staff)
    record(deployment, school, students(model, 100, seed=3))

    result = check_drift(calendar_district, DriftParams(baseline="seasonal"))

    said = "the training data (too few predictions in the same weeks of "
    assert result.groups[0].baseline.startswith(said)
    assert result.groups[0].checks[0].baseline == result.groups[0].baseline


def _days(window):
    return [
        window.start + dt.timedelta(days=i) for i in range((window.end - window.start).days + 1)
    ]


# --- performance ------------------------------------------------------------------------------
def test_performance_alerts_where_recall_dropped(ml_stores, district, school_a, school_b, staff):
    model = make_model(district, seed=0)
    model.validation = {"threshold": 0.5, "metrics": {"recall": 0.75, "precision": 0.5}}
    model.save()
    services.roll_out(model, scope="district", user=staff)
    a = generate_district(900, seed=11).assign(school=school_a.name)
    a["at_risk"] = a["at_risk"].map({"yes": "no", "no": "yes"})  # outcomes the model misses
    b = generate_district(900, seed=12).assign(school=school_b.code)  # named by its code
    c = generate_district(30, seed=13).assign(school="Nowhere School")
    outcomes = pd.concat([a, b, c], ignore_index=True)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["ses"], school="school")

    result = check_performance(district, outcomes, roles, PerformanceParams(), run_id=9)

    by_school = {s.school: s for s in result.schools}
    assert set(by_school) == {school_a.name, school_b.code}
    worse, fine = by_school[school_a.name], by_school[school_b.code]
    assert worse.status == "degraded" and "recall" in [f.cause for f in worse.findings]
    assert any(f.cause.startswith("recall (ses=") for f in worse.findings)
    assert fine.status == "ok" and not fine.findings and not fine.alerts
    assert {(a.school, a.cause) for a in worse.alerts} == {
        (school_a, f.cause) for f in worse.findings
    }
    assert result.new_alerts == len(worse.findings) == Alert.objects.count()
    recall = next(f for f in worse.findings if f.cause == "recall")
    alert = Alert.objects.get(cause="recall")
    assert alert.message == (
        f"recall {recall.now:.3f} on 900 outcomes vs 0.750 in validation ({model})."
    )
    assert alert.severity == ("critical" if recall.drop > 0.2 else "warning")
    check = PerformanceCheck.objects.get(school=school_a, run_id=9)
    assert check.metrics == worse.metrics and check.groups == worse.groups and check.rows == 900
    assert f"Nowhere School: not a school of {district} with a model deployed; skipped" in (
        result.log
    )
    assert result.report()["results"][0] == {
        "school": school_a.name, "status": "degraded", "metrics": worse.metrics,
        "calibration": worse.calibration, "groups": worse.groups,
    }  # fmt: skip


def test_performance_few_at_risk_students_and_own_thresholds(
    ml_stores, district, school_a, school_b, staff
):
    model = make_model(district, seed=0)
    model.validation = {"threshold": 0.5, "metrics": {"recall": 0.75, "precision": 0.5}}
    model.save()
    services.roll_out(model, scope="district", user=staff)
    a = generate_district(900, seed=11).assign(school=school_a.name)
    a["at_risk"] = a["at_risk"].map({"yes": "no", "no": "yes"})
    few = generate_district(40, seed=13).assign(school=school_b.name, at_risk="no")
    roles = Roles(label="at_risk", positive=["yes"], school="school")
    relaxed = {"a": {"max_recall_drop": 1.0, "max_precision_drop": 1.0}}

    result = check_performance(district, pd.concat([a, few]), roles,
                               PerformanceParams(school_thresholds=relaxed))  # fmt: skip

    assert [(s.school, s.status) for s in result.schools] == [
        (school_a.name, "ok"), (school_b.name, "insufficient_data")
    ]  # fmt: skip
    assert result.log[1] == f"{school_b.name}: insufficient data (0 at-risk students)"
    assert result.report()["results"][1] == {"school": school_b.name, "status": "insufficient_data"}
    assert not Alert.objects.exists() and PerformanceCheck.objects.count() == 1


def test_outcomes_without_a_school_column_cannot_be_checked(district):
    with pytest.raises(CheckError, match="need their label and school column marked"):
        check_performance(district, pd.DataFrame({"y": [1]}), Roles(label="y"), PerformanceParams())


# --- latency ----------------------------------------------------------------------------------
def test_latency_is_judged_against_each_profiles_own_normal(district, school_a, school_b):
    model = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="r", algorithm="lr",
        dataset_sha256="0" * 64,
    )  # fmt: skip
    today = clock.today()

    def day(school, days_ago, profile, p95):
        DailyAggregate.objects.create(
            school=school, day=today - dt.timedelta(days=days_ago), model_version=model,
            source="edge:n1", device_profile=profile, count=50, latency_p95_ms=p95,
        )  # fmt: skip

    for days_ago in range(20):
        slow_now = days_ago < 3
        day(school_a, days_ago, "old laptop", 40.0)  # always slow: its normal
        day(school_a, days_ago, "server", 9.5 if slow_now else 3.0)  # 3.2x its normal
        day(school_b, days_ago, "server", 10.0 if slow_now else 3.0)  # 3.3x, but b allows 5x
    day(school_b, 0, "tablet", 5.0)  # no normal yet
    params = LatencyParams(school_thresholds={"b": {"max_ratio": 5.0}})

    result = check_latency(district, params)

    verdicts = {(p.school.code, p.profile): p for p in result.profiles}
    assert {k: p.status for k, p in verdicts.items()} == {
        ("a", "old laptop"): "ok", ("a", "server"): "slow",
        ("b", "server"): "ok", ("b", "tablet"): "insufficient_data",
    }  # fmt: skip
    server = verdicts[("a", "server")]
    assert (server.p95_ms, server.normal_ms, server.normal_days) == (9.5, 3.0, 17)
    assert server.alert is not None and server.new_alert and result.new_alerts == 1
    assert server.alert.cause == "p95 latency on server" and server.alert.severity == "warning"
    assert server.alert.message == (
        "p95 9.5 ms on server, 3.2x its normal 3.0 ms (median of 17 days)."
    )
    assert f"{school_a.name} / server: p95 9.5 ms vs normal 3.0 ms" in result.log
    assert len(result.log) == 3  # no line for a profile without a normal
    assert {"school": school_b.name, "profile": "tablet", "status": "insufficient_data"} in (
        result.report()["results"]
    )
    assert check_latency(district, params).new_alerts == 0  # the open alert is refreshed


# --- the seasonal baseline outlives pruning and retraining; central and edge data together ------
SHIFT = 0.08  # a dip inside the range the bins resolve (an open end bin cannot be re-split)


def test_after_pruning_and_retraining_the_seasonal_check_still_uses_last_years_weeks(
    ml_stores, calendar_district, staff
):
    """Last year's rows were recorded under the old model, aggregated and pruned; a retrained
    model (other bins) is deployed since. The seasonal check still reads last year's weeks from
    the kept aggregates, re-binned onto the new model's bins: the yearly dip is no drift."""
    from edumlops.monitoring import telemetry

    district = calendar_district
    school = _school(district, "s", "Seasonal School")
    old = make_model(district, seed=0)
    old_deployment = services.roll_out(old, scope="district", user=staff)
    window = Window.ending_today(district, 14)
    last_year, label = baseline_window("seasonal", window)
    record(old_deployment, school, students(old, 300, seed=4, attendance_shift=SHIFT),
           _days(last_year))  # fmt: skip

    done = telemetry.aggregate_and_prune(clock.today())
    assert done["deleted_rows"] == 300 and not Prediction.objects.exists()
    kept = DailyAggregate.objects.filter(school=school, model_version=old)
    assert sum(a.count for a in kept) == 300  # the aggregates survive the pruning

    new = make_model(district, seed=1)
    assert (
        new.drift_reference["attendance_rate"]["edges"]
        != (old.drift_reference["attendance_rate"]["edges"])
    )  # the retrained model's bins differ
    deployment = services.roll_out(new, scope="district", user=staff)
    open_days = [d for d in _days(window) if not window.masked(d)]
    record(deployment, school, students(new, 300, seed=3, attendance_shift=SHIFT), open_days)

    seasonal = check_drift(district, DriftParams(baseline="seasonal"))
    (group,) = seasonal.groups
    assert group.model == new
    assert group.baseline == label == f"the same weeks of {drift.school_year(last_year.start)}"
    assert group.status == "no_drift", [f for f in group.features if f["drifted"]]
    assert not Alert.objects.exists()
    training = check_drift(district, DriftParams(baseline="training"))
    assert "attendance_rate" in training.groups[0].drifted  # the dip is real against training


def test_central_predictions_and_edge_aggregates_of_a_school_are_checked_together(
    ml_stores, plain, staff
):
    """A school answers some students centrally and some on its edge node: the check counts
    both (before, the edge aggregates replaced the central rows)."""
    district = plain
    school = _school(district, "a", "Alder School")
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district")
    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    record(deployment, school, students(model, 20, seed=5))  # central, today
    frame = pd.DataFrame(students(model, 200, seed=6)).assign(__prediction__=0.3)
    DailyAggregate.objects.create(
        school=school, day=clock.today(), model_version=model, source="edge:n1", count=200,
        bands={"low": 200}, histograms=drift.histograms(reference, frame),
    )  # fmt: skip

    result = check_drift(district, DriftParams(baseline="training", window_days=7))

    (group,) = result.groups
    assert group.predictions == 220
    assert group.baseline == "the training data"
