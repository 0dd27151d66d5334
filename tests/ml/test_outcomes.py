"""Outcomes derived from a rule (edumlops.ml.datasets): the rule, its checks, the counts and the
leak detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.ml.datasets import (
    DatasetError,
    Outcome,
    Roles,
    check_outcome,
    check_roles,
    derive_outcome,
    describe_outcome,
    find_leaks,
    infer_schema,
    plan_minimisation,
    single_feature_auc,
    with_outcome,
)
from edumlops.ml.synth import generate_district


def grades(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    final = rng.integers(0, 21, rows).astype(float)
    final[:3] = np.nan
    return pd.DataFrame(
        {
            "G3": final,
            "G2": np.clip(final + rng.normal(0, 0.5, rows), 0, 20).round(),
            "absences": rng.integers(0, 30, rows),
            "sex": rng.choice(["F", "M"], rows),
            "Mjob": rng.choice(["teacher", "health", "other"], rows),
        }
    )


def rule(**kw) -> Outcome:
    return Outcome(**{"name": "at_risk", "column": "G3", "op": "<", "value": 10, **kw})


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("<", 10, lambda x: x < 10),
        ("<=", 10, lambda x: x <= 10),
        (">", 15, lambda x: x > 15),
        (">=", 15, lambda x: x >= 15),
        ("==", 0, lambda x: x == 0),
        ("between", [8, 12], lambda x: (x >= 8) & (x <= 12)),
    ],
)
def test_numeric_rules_say_yes_where_they_hold_and_nothing_where_the_grade_is_missing(
    op, value, expected
):
    frame = grades()
    frame.loc[5, "G3"] = 0.0
    derived = derive_outcome(frame, check_outcome(frame, rule(op=op, value=value)))
    known = frame["G3"].notna()
    assert derived[~known].isna().all()
    want = np.where(expected(frame.loc[known, "G3"]), "yes", "no")
    assert derived[known].tolist() == want.tolist()


def test_a_set_of_categories_says_yes_for_those_values():
    frame = grades()
    checked = check_outcome(frame, rule(column="Mjob", op="in", value=["teacher", "health"]))
    derived = derive_outcome(frame, checked)
    assert (derived == "yes").tolist() == frame["Mjob"].isin(["teacher", "health"]).tolist()
    assert checked.rule == "Mjob is teacher or health"


def test_the_rule_reads_like_a_sentence():
    frame = grades()
    assert check_outcome(frame, rule(value="10")).rule == "G3 < 10"
    assert check_outcome(frame, rule(op="between", value=[8, 12.5])).rule == (
        "G3 between 8 and 12.5"
    )
    assert check_outcome(frame, rule(op=">=", value=15)).rule == "G3 ≥ 15"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"column": "G9"}, "outcome.column", "There is no column 'G9'"),
        ({"name": "G2"}, "outcome.name", "already has a column 'G2'"),
        ({"name": "1st"}, "outcome.name", "Name the outcome"),
        ({"op": "~"}, "outcome.op", "Unknown rule"),
        ({"column": "Mjob"}, "outcome.op", "'Mjob' holds categorical values"),
        ({"op": "in", "value": ["1"]}, "outcome.op", "'in' is for categories"),
        ({"value": "ten"}, "outcome.value", "must be a number"),
        ({"value": [10]}, "outcome.value", "takes one number"),
        ({"value": True}, "outcome.value", "must be a number"),
        ({"value": float("nan")}, "outcome.value", "finite"),
        ({"op": "between", "value": 10}, "outcome.value", "two numbers"),
        ({"op": "between", "value": [12, 8]}, "outcome.value", "swap them"),
        ({"column": "Mjob", "op": "in", "value": []}, "outcome.value", "list of the values"),
        ({"column": "Mjob", "op": "in", "value": ["pilot"]}, "outcome.value", "does not occur"),
        ({"value": 100}, "outcome.value", "one class only"),
        ({"value": -1}, "outcome.value", "one class only"),
        ({"keep_leaky": ["nope"]}, "outcome.keep_leaky", "not a column"),
        ({"keep_leaky": ["G3"]}, "outcome.keep_leaky", "can never be a feature"),
    ],
)
def test_a_bad_rule_names_its_field_and_the_fix(changes, field, words):
    with pytest.raises(DatasetError, match=words) as caught:
        check_outcome(grades(), rule(**changes))
    assert caught.value.field == field


def test_counts_overall_and_per_sensitive_group():
    frame = grades()
    roles = Roles(sensitive=["sex"], outcome=check_outcome(frame, rule()))
    described = describe_outcome(frame, roles)
    known = frame[frame["G3"].notna()]
    positive = known["G3"] < 10
    assert described.counts["rows"] == len(known) == len(frame) - 3
    assert described.counts["missing"] == 3
    assert described.counts["positive"] == int(positive.sum())
    assert described.counts["negative"] == int((~positive).sum())
    by_sex = {g["group"]: g for g in described.counts["by_group"]["sex"]}
    for sex in ("F", "M"):
        mine = known["sex"] == sex
        assert by_sex[sex] == {
            "group": sex,
            "rows": int(mine.sum()),
            "positive": int((positive & mine).sum()),
        }


def test_the_source_and_a_leaking_column_are_excluded_unless_kept():
    frame = grades()
    roles = Roles(outcome=check_outcome(frame, rule()))
    described = describe_outcome(frame, roles)
    excluded = {e["column"]: e["why"] for e in described.excluded}
    assert set(excluded) == {"G3", "G2"}
    assert "made from it" in excluded["G3"] and "almost perfectly" in excluded["G2"]
    assert [leak["column"] for leak in described.leaks] == ["G2"]
    assert described.leaks[0]["auc"] < 0.05 and not described.leaks[0]["kept"]
    kept = describe_outcome(frame, Roles(outcome=check_outcome(frame, rule(keep_leaky=["G2"]))))
    assert [e["column"] for e in kept.excluded] == ["G3"]
    assert kept.leaks[0]["kept"] is True
    assert set(kept.not_features) == {"at_risk", "G3"}


def test_single_feature_auc_measures_numbers_and_categories_both_ways():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert single_feature_auc(pd.Series([1, 2, 3, 4, 5, 6]), y) == 1.0
    assert single_feature_auc(pd.Series([6, 5, 4, 3, 2, 1]), y) == 0.0
    assert single_feature_auc(pd.Series(["a", "a", "a", "b", "b", "b"]), y) == 1.0
    assert single_feature_auc(pd.Series([1, 1, 1, 1, 1, 1]), y) is None
    noise = pd.Series(np.random.default_rng(0).normal(size=400))
    labels = np.random.default_rng(1).integers(0, 2, 400)
    assert find_leaks(pd.DataFrame({"x": noise}), labels, ["x"]) == []


def test_the_derived_label_passes_the_role_checks_and_survives_minimising():
    frame = grades()
    roles = Roles(label="at_risk", positive=["yes"], outcome=check_outcome(frame, rule()))
    check_roles(frame, roles)
    derived = with_outcome(frame, roles)
    assert len(derived) == len(frame) - 3 and set(derived["at_risk"]) == {"yes", "no"}
    plan = plan_minimisation(infer_schema(frame), roles, keep=["absences"])
    assert "at_risk" in plan.keep
    assert Roles.from_dict(roles.to_dict()) == roles


def test_the_generated_grades_have_no_label_and_two_leaking_earlier_grades():
    frame = generate_district(1200, grades=True, seed=3)
    assert "at_risk" not in frame.columns
    assert frame["final_grade"].between(0, 20).all()
    roles = Roles(sensitive=["sex"], outcome=check_outcome(frame, rule(column="final_grade")))
    described = describe_outcome(frame, roles)
    assert {leak["column"] for leak in described.leaks} == {"grade_term1", "grade_term2"}
    assert 0.1 < described.counts["positive"] / described.counts["rows"] < 0.4


def test_the_model_card_states_the_rule_and_the_columns_left_out():
    from edumlops.ml.model_card import build_card, to_markdown

    frame = grades()
    roles = Roles(label="at_risk", positive=["yes"], outcome=check_outcome(frame, rule()))
    outcome = describe_outcome(frame, roles)
    training = {
        "rows": 197,
        "positives": 90,
        "label": "at_risk",
        "positive": ["yes"],
        "outcome": {**outcome.definition(), "rule": outcome.rule, "excluded": outcome.excluded},
    }
    card = build_card(
        model={"name": "maple-at-risk", "version": "1"},
        intended_use="Flag students.",
        training=training,
        validation={},
        bias_report={},
        bundle={},
        approvals=[],
    )
    assert card["data"]["outcome"]["rule"] == "G3 < 10"
    md = to_markdown(card)
    assert "- Outcome rule: at_risk = yes where G3 < 10, else no" in md
    assert "- Not a feature: G2 (it alone predicts at_risk almost perfectly" in md


def test_a_category_of_many_rare_values_is_not_taken_for_a_leak():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    rare = pd.Series([f"c{i // 2}" for i in range(300)])  # 150 values, two rows each
    assert 0.3 < single_feature_auc(rare, y) < 0.7
    assert single_feature_auc(pd.Series(np.where(y == 1, "fail", "pass")), y) == 1.0
