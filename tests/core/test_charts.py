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
