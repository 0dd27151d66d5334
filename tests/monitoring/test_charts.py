"""The drift chart's geometry and words (edumlops/monitoring/charts.py), on stored checks."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from edumlops.core import clock
from edumlops.monitoring.charts import Rule, drift_chart
from edumlops.monitoring.models import DriftCheck

pytestmark = pytest.mark.django_db


def _check(school, days_ago: int, psis: dict[str, float], status: str = "no_drift") -> None:
    day = clock.today() - dt.timedelta(days=days_ago)
    DriftCheck.objects.create(
        school=school, group=school.name, baseline="the training data", status=status,
        checked_at=timezone.make_aware(dt.datetime.combine(day, dt.time(6))),
        window_start=day - dt.timedelta(days=13), window_end=day,
        features=[{"name": n, "psi": v, "js": 0.0, "drifted": False} for n, v in psis.items()],
    )  # fmt: skip


def test_no_check_no_chart_and_insufficient_checks_are_not_drawn(district, school_a):
    assert drift_chart(school_a, None) is None
    _check(school_a, 3, {"a": 0.5}, status="insufficient_data")
    assert drift_chart(school_a, None) is None


def test_top_features_drawn_the_rest_folded_and_the_rule_in_force_placed(district, school_a):
    psis = {f"f{i}": 0.01 * (i + 1) for i in range(7)} | {"__prediction__": 0.9}
    _check(school_a, 14, psis)
    _check(school_a, 7, {k: v * 2 for k, v in psis.items()})
    rule = Rule(psi=0.1, js=0.05, own=False, workflow="Watch")
    chart = drift_chart(school_a, rule, top=3)
    assert [s.name for s in chart.series] == ["f6", "f5", "f4"]  # by their largest PSI
    assert chart.folded == ["f3", "f2", "f1", "f0"] and "__prediction__" not in chart.folded
    assert chart.folded_text.startswith("4 more features not drawn (largest PSI 0.080)")
    assert chart.series[0].last == pytest.approx(0.14)
    # y: 0 at the bottom of the plot, the axis maximum (0.2 here) at its top
    assert chart.y_ticks[0].text == "0" and chart.y_ticks[-1].text == "0.2"
    expected = chart.plot_bottom - 0.1 / 0.2 * (chart.plot_bottom - chart.top)
    assert chart.threshold_y == pytest.approx(expected, abs=0.1)
    assert chart.threshold_text.startswith("Alert above PSI 0.1 (the district's value, Watch)")
    labels = [s.label_y for s in chart.series]
    assert all(abs(a - b) >= 11 for a in labels for b in labels if a is not b)  # apart
    assert drift_chart(school_a, None).threshold_y is None
