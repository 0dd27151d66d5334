"""Inline chart geometry."""

from __future__ import annotations

from edumlops.core.charts import calibration_points, column_bars, column_chart, group_bars


def test_the_tallest_bar_fills_the_height_and_the_others_scale():
    bars = column_bars([2, 4, 0], ["a", "b", "c"], width=30, height=40)
    assert [b.h for b in bars] == [20.0, 40.0, 0.0]
    assert bars[1].y == 0.0 and bars[0].title == "a: 2"


def test_a_numeric_column_charts_its_histogram_and_a_categorical_its_top_values():
    numeric = {"stats": {"histogram": {"counts": [1, 3], "edges": [0.0, 0.5, 1.0]}}}
    assert [b.title for b in column_chart(numeric)] == ["0–0.5: 1", "0.5–1: 3"]
    categorical = {"stats": {"top": [{"value": "yes", "count": 5}, {"value": "no", "count": 9}]}}
    assert [b.title for b in column_chart(categorical)] == ["yes: 5", "no: 9"]
    assert column_chart({"stats": {}}) == []


def test_group_bars_place_the_interval_as_a_whisker():
    groups = [
        {
            "attribute": "sex",
            "group": "F",
            "n": 50,
            "insufficient": False,
            "metrics": {"recall": {"value": 0.5, "interval": [0.4, 0.6]}},
        },
        {"attribute": "ses", "group": "low", "n": 5, "insufficient": True, "metrics": {}},
    ]
    (bar,) = group_bars(groups, "sex", "recall")
    assert (bar.width, bar.low, bar.span) == (50.0, 40.0, 20.0)


def test_a_calibration_curve_maps_to_svg_coordinates():
    assert (
        calibration_points(
            {"mean_predicted": [0.0, 1.0], "fraction_positive": [0.0, 1.0]}, size=100
        )
        == "0.0,100.0 100.0,0.0"
    )
    assert calibration_points(None) == ""


def test_time_chart_places_lines_bands_and_alerts_on_one_axis():
    import datetime as dt

    from edumlops.core.charts import time_chart

    day = dt.date(2026, 11, 2)
    chart = time_chart(
        {"a": [(day, 0.1), (day + dt.timedelta(days=10), 0.5)], "b": [(day, 0.0)]},
        periods=[("break", "Half term", day + dt.timedelta(days=3), day + dt.timedelta(days=4))],
        markers=[(day + dt.timedelta(days=10), "warning: a")],
        threshold=0.2,
        width=210,
        height=100,
    )
    a = next(line for line in chart.lines if line.name == "a")
    assert a.points.split()[0].startswith("0.0,") and a.last_x == 100.0
    assert chart.bands[0].x == 30.0 and chart.markers[0].x == 100.0
    assert chart.lines[0].dash != chart.lines[1].dash  # told apart without colour
    assert time_chart({}) is None


def test_predictions_per_day_have_dated_ticks_and_a_round_count_axis():
    import datetime as dt

    from edumlops.core.charts import day_columns

    days = [dt.date(2026, 11, 4) + dt.timedelta(days=i) for i in range(30)]
    counts = [0] * 29 + [13]
    chart = day_columns(days, counts, width=336, height=150)
    assert (chart.total, chart.busiest) == (13, 13)
    # a tick every 7 days counted back from the last day, which is always labelled
    assert [t.label for t in chart.x_ticks] == ["5 Nov", "12 Nov", "19 Nov", "26 Nov", "3 Dec"]
    assert [t.label for t in chart.y_ticks] == ["0", "10", "20"]  # 13 rounds up to 20
    assert chart.y_ticks[0].at == chart.bottom and chart.y_ticks[-1].at == 4
    assert chart.bars[-1].title == "3 Dec: 13 predictions" and chart.bars[0].h == 0
    assert chart.bars[-1].h == round((chart.bottom - 4) * 13 / 20, 2)
    assert chart.bars[0].x >= chart.left  # bars start right of the count axis


def test_a_day_chart_with_no_predictions_still_has_axes_and_one_count_per_day_is_required():
    import datetime as dt

    import pytest

    from edumlops.core.charts import day_columns

    days = [dt.date(2026, 12, 1), dt.date(2026, 12, 2)]
    chart = day_columns(days, [0, 0])
    assert [t.label for t in chart.y_ticks] == ["0", "1", "2"]
    assert chart.bars[1].title == "2 Dec: 0 predictions"
    with pytest.raises(ValueError, match="2 days but 1 counts"):
        day_columns(days, [1])
