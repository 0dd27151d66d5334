from __future__ import annotations

import pytest

from edumlops.ml import task_types
from edumlops.ml.task_types import TaskType


def test_a_model_stored_before_task_types_is_binary_risk():
    assert task_types.parse("") is TaskType.BINARY_RISK
    assert task_types.parse(None) is TaskType.BINARY_RISK
    assert task_types.parse("forecast") is TaskType.FORECAST


def test_an_unknown_task_type_names_the_known_ones():
    with pytest.raises(ValueError, match="use one of binary_risk, ordinal_score, forecast"):
        task_types.parse("regression")


def test_a_refusal_says_what_the_step_works_on_and_what_to_use_instead():
    assert task_types.refusal("Validate", "binary_risk", (TaskType.BINARY_RISK,), {}) is None
    said = task_types.refusal(
        "Validate",
        "forecast",
        (TaskType.BINARY_RISK, TaskType.ORDINAL_SCORE),
        {TaskType.FORECAST: "Backtest forecast"},
    )
    assert said == (
        "Validate works on a yes/no risk model or a scoring model (whole-point scores); this is "
        "a forecast model. Use Backtest forecast instead."
    )
    plain = task_types.refusal("Validate", "mastery", (TaskType.BINARY_RISK,), {})
    assert plain.endswith("Connect a model of the kind it works on.")
