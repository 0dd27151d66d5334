"""Model cards: Wilson intervals per group, limitations found from the data, Markdown."""

from __future__ import annotations

import json

import pytest

from edumlops.ml.model_card import build_card, group_metrics, to_markdown, wilson

BIAS = {
    "outcome": "inconclusive",
    "summary": "One group is too small to judge.",
    "checks": [],
    "groups": [
        {
            "attribute": "ses",
            "group": "low",
            "n": 400,
            "positives": 100,
            "metrics": {"false_negative_rate": 0.3, "selection_rate": 0.25},
            "insufficient": False,
        },
        {
            "attribute": "ses",
            "group": "high",
            "n": 8,
            "positives": 1,
            "metrics": {"false_negative_rate": None, "selection_rate": 0.125},
            "insufficient": True,
        },
    ],
}


def test_wilson_matches_the_textbook_interval():
    low, high = wilson(0.3, 100)
    assert low == pytest.approx(0.2189, abs=1e-3)
    assert high == pytest.approx(0.3958, abs=1e-3)
    assert wilson(None, 10) is None and wilson(0.5, 0) is None


def test_group_rates_get_intervals_from_their_own_denominator():
    rows = group_metrics(BIAS)
    fnr = rows[0]["metrics"]["false_negative_rate"]
    assert fnr["interval"] == wilson(0.3, 100)  # over the 100 at-risk students
    assert rows[0]["metrics"]["selection_rate"]["interval"] == wilson(0.25, 400)
    assert rows[1]["metrics"]["false_negative_rate"]["interval"] is None


def card():
    return build_card(
        model={
            "name": "maple-at-risk",
            "version": "3",
            "algorithm": "logistic_regression",
            "run_id": "abc",
            "aliases": ["challenger"],
        },
        intended_use="Early support.",
        training={
            "dataset": "Students v1",
            "dataset_sha256": "f" * 64,
            "rows": 900,
            "positives": 180,
            "label": "at_risk",
            "positive": ["yes"],
            "schools": ["a", "b"],
            "period": {"from": "2024-25 T1", "to": "2025-26 T2"},
        },
        validation={
            "threshold": 0.5,
            "test_rows": 300,
            "metrics": {"auc": 0.81, "recall": 0.7},
            "intervals": {"auc": [0.77, 0.85], "recall": [0.62, 0.78]},
        },
        bias_report=BIAS,
        bundle={},
        approvals=[
            {
                "decision": "approve",
                "by": "dana",
                "at": "2026-11-25T10:00:00",
                "comment": "ok for pilot",
            }
        ],
    )


def test_the_card_lists_found_limitations_and_is_plain_json():
    c = card()
    json.dumps(c)
    text = " ".join(c["limitations"])
    assert "2024-25 T1 to 2025-26 T2" in text
    assert "ses=high (n=8)" in text
    assert c["evaluation"]["overall"]["auc"] == {"value": 0.81, "interval": [0.77, 0.85]}


def test_the_markdown_carries_provenance_metrics_fairness_and_approvals():
    md = to_markdown(card())
    assert md.startswith("# Model card: maple-at-risk version 3")
    assert "f" * 64 in md
    assert "| ROC AUC | 0.810 (0.770–0.850) |" in md
    assert "Bias gate: **inconclusive**" in md
    assert "| ses | high (insufficient data) | 8 |" in md
    assert "approve by dana on 2026-11-25: ok for pilot" in md


def test_a_rate_over_too_few_students_is_marked_not_judged():
    from edumlops.core.charts import group_bars

    report = {**BIAS, "settings": {"min_group_size": 150}}
    rows = group_metrics(report)
    low = rows[0]["metrics"]
    assert low["false_negative_rate"]["judged"] is False  # 100 at-risk students < 150
    assert low["selection_rate"]["judged"] is True  # 400 students
    bars = group_bars(rows, "ses", "false_negative_rate")
    assert [b.insufficient for b in bars] == [True, True]


def test_a_private_models_card_shows_epsilon_bounds_and_the_price():
    from edumlops.ml.model_card import build_card, to_markdown

    privacy = {
        "epsilon": 1.0,
        "delta": 0.0,
        "mechanism": "objective perturbation",
        "bounds": {"attendance_rate": [0.0, 1.0], "prior_gpa": [0.5, 4.0]},
        "bounds_from": {"attendance_rate": "given", "prior_gpa": "dataset profile"},
        "bounds_read_from_data": ["prior_gpa"],
        "categories_from": "training rows",
        "data_norm": 2.0,
        "non_private_algorithm": "Logistic regression",
        "comparison": {
            "rows": 100,
            "private": {"accuracy": 0.71, "auc": 0.74},
            "non_private": {"accuracy": 0.78, "auc": 0.81},
        },
    }
    args = dict(
        model={"name": "m", "version": "1"},
        intended_use="x",
        validation={},
        bias_report={},
        bundle={},
        approvals=[],
    )
    card = build_card(training={"privacy": privacy}, **args)
    assert card["privacy"]["epsilon"] == 1.0
    assert card["privacy"]["bounds"][1] == {
        "feature": "prior_gpa",
        "lower": 0.5,
        "upper": 4.0,
        "from": "dataset profile",
    }
    assert any("prior_gpa were read from the data" in item for item in card["limitations"])
    text = to_markdown(card)
    assert "## Differential privacy" in text and "ε = 1, δ = 0" in text
    assert "| private (ε = 1) | 0.710 | 0.740 |" in text
    assert "| non-private | 0.780 | 0.810 |" in text
    plain = build_card(training={}, **args)
    assert plain["privacy"] is None and "Differential privacy" not in to_markdown(plain)


# --- a forecast's card ------------------------------------------------------------------------
FORECAST_TRAINING = {
    "rows": 1080,
    "series": 36,
    "terms": 30,
    "schools": ["Hillview High", "Mill Road Elementary"],
    "period": {"from": "2016-17 fall", "to": "2025-26 summer"},
    "students_last_term": 4012,
    "dataset": "Enrollment v1",
    "dataset_sha256": "ab" * 32,
    "forecast": {
        "method": "ets",
        "by": "grade",
        "horizon": 3,
        "level": 0.8,
        "first_period": "2026-27 fall",
        "last_period": "2026-27 summer",
        "series": 36,
        "fallbacks": 2,
        "fallback_reasons": ["Mill Road Elementary grade 1: 6 terms, ETS needs 9"],
        "total_next_term": 4103.4,
    },
}
BACKTEST = {
    "kind": "backtest",
    "origins": ["2020-21 fall", "2021-22 fall", "2022-23 fall"],
    "gate": {
        "mase": 0.857,
        "baseline_mase": 1.039,
        "ratio": 0.825,
        "mape": 0.0289,
        "baseline_mape": 0.0349,
        "coverage": 0.69,
        "max_ratio": 1.0,
    },
    "passed": True,
    "failures": [],
}


def forecast_card(validation):
    return build_card(
        model={"name": "riverside-enrollment-forecast", "version": "1", "algorithm": "ets"},
        intended_use="",
        training=FORECAST_TRAINING,
        validation=validation,
        bias_report={},
        bundle={},
        approvals=[],
        task_type="forecast",
    )


def test_a_forecasts_card_reads_as_a_forecast_not_as_a_risk_model():
    card = forecast_card(BACKTEST)
    assert card["task"] == {"type": "forecast", "label": "Enrollment forecast"}
    assert card["intended_use"].startswith("Plan staff, rooms and budgets")
    section = card["forecast"]
    assert section["method_label"] == "exponential smoothing (ETS)"
    assert section["backtest"]["mase_ratio"] == 0.825 and section["backtest"]["origins"] == 3
    assert section["backtest"]["first_origin"] == "2020-21 fall"
    text = " ".join(card["limitations"])
    assert "risk score" not in text and "bias gate" not in text
    assert "2 series had too little history" in text
    assert "Forecast error monitor" in text
    md = to_markdown(card)
    assert "- Predicts: Enrollment forecast" in md
    assert "## Forecast" in md and "## Evaluation" not in md and "## Fairness" not in md
    assert "| MAPE | 2.89% | 3.49% |" in md
    assert "Backtest on 3 past registration cycles (2020-21 fall to 2022-23 fall): **passed**" in md
    assert "- Label:" not in md and "Sensitive attributes" not in md
    json.dumps(card)  # plain JSON for the download


def test_a_forecast_not_backtested_says_so():
    card = forecast_card({})
    assert card["forecast"]["backtest"] is None
    assert (
        "This forecast has not been backtested on past registration cycles." in card["limitations"]
    )
    assert "Not backtested yet." in to_markdown(card)


def test_each_task_type_has_its_own_intended_use_when_none_is_given():
    uses = {
        t: build_card(
            model={}, intended_use="", training={}, validation={}, bias_report={}, bundle={},
            approvals=[], task_type=t,
        )["intended_use"]
        for t in ("binary_risk", "ordinal_score", "forecast", "mastery")
    }  # fmt: skip
    assert len(set(uses.values())) == 4
    assert uses["binary_risk"].startswith("Flag students who may be at risk")
    given = build_card(
        model={}, intended_use="Ours.", training={}, validation={}, bias_report={}, bundle={},
        approvals=[], task_type="forecast",
    )  # fmt: skip
    assert given["intended_use"] == "Ours."


SCORER_TRAINING = {
    "rows": 300,
    "dataset": "Answers v1",
    "dataset_sha256": "ab" * 32,
    "score_counts": {"0": 60, "1": 90, "2": 90, "3": 60},
    "vocabulary": 812,
    "scorer": {
        "text_column": "answer",
        "score_column": "score",
        "scale": [0, 3],
        "points": [0, 1, 2, 3],
        "onnx_sha256": "cd" * 32,
        "onnx_bytes": 48213,
        "parity": {"rows": 75, "disagreeing_scores": 0, "max_prob_diff": 1e-6},
    },
}
SCORING = {
    "kind": "scoring",
    "metrics": {
        "qwk": 0.812,
        "exact_agreement": 0.64,
        "adjacent_agreement": 0.97,
        "smd": 0.03,
        "unsure_share": 0.12,
        "human_qwk": 0.88,
        "human_exact_agreement": 0.71,
    },
    "unsure": {"share": 0.12, "count": 9, "margin": 0.1},
    "limits": {"min_qwk": 0.7, "max_unsure_share": 0.3},
    "test_rows": 75,
    "passed": True,
    "failures": [],
}
SCORER_BIAS = {
    "outcome": "pass",
    "summary": "Scores differ from the teachers' by at most 0.08 standard deviations per group.",
    "checks": [],
    "groups": [
        {"attribute": "ell", "group": "yes", "n": 20, "metrics": {"smd": 0.08}},
        {"attribute": "ell", "group": "no", "n": 55, "metrics": {"smd": -0.02}},
    ],
    "settings": {"min_group_size": 10},
}


def scorer_card(validation, bias_report=SCORER_BIAS):
    return build_card(
        model={"name": "riverside-short-answer", "version": "2", "algorithm": "text_scorer"},
        intended_use="",
        training=SCORER_TRAINING,
        validation=validation,
        bias_report=bias_report,
        bundle={},
        approvals=[],
        task_type="ordinal_score",
    )


def test_a_scorers_card_reads_as_agreement_with_teachers_not_as_a_risk_model():
    card = scorer_card(SCORING)
    assert card["task"] == {"type": "ordinal_score", "label": "Score on a scale"}
    assert card["forecast"] is None and card["mastery"] is None
    section = card["scoring"]
    assert section["scale"] == {"low": 0, "high": 3}
    assert section["onnx_sha256"] == "cd" * 32
    v = section["validation"]
    assert v["qwk"] == 0.812 and v["human_qwk"] == 0.88 and v["unsure_count"] == 9
    text = " ".join(card["limitations"])
    assert "risk score" not in text
    assert "answers to other questions" in text and "go to a teacher" in text
    # the bias gate's score differences stay on the card, without a rate's interval
    assert card["fairness"]["groups"][0]["metrics"]["smd"]["interval"] is None
    md = to_markdown(card)
    assert "## Scoring" in md and "## Fairness" in md
    assert "- Sensitive attributes: ell" in md
    assert "Against the teachers on 75 held-out answers: **passed**" in md
    assert "| Teacher–teacher QWK (the ceiling) | 0.880 |" in md
    assert "12% of the answers (9) were too close to call and are sent to a teacher." in md
    assert f"SHA-256 `{'cd' * 32}`" in md and "threshold" not in md
    json.dumps(card)


def test_a_scorer_not_validated_and_without_a_second_rater_says_so():
    card = scorer_card({}, bias_report={})
    assert card["scoring"]["validation"] is None
    assert "This scorer has not been validated against teachers' scores." in card["limitations"]
    assert "Not validated against the teachers yet." in to_markdown(card)
    no_ceiling = {**SCORING, "metrics": {k: v for k, v in SCORING["metrics"].items()
                                         if not k.startswith("human")}}  # fmt: skip
    md = to_markdown(scorer_card(no_ceiling))
    assert "no second teacher's scores: the teacher–teacher ceiling was not measured" in md


MASTERY_TRAINING = {
    "answers": 4000,
    "students": 250,
    "skills": {"fractions": {"answers": 2000, "students": 250}, "decimals": {"answers": 2000}},
    "fit": {"forgets": False, "num_fits": 1},
    "parameters": {
        "fractions": {"prior": 0.2, "learn": 0.15, "guess": 0.15, "slip": 0.1, "forget": 0.0},
        "decimals": {"prior": 0.35, "learn": 0.25, "guess": 0.6, "slip": 0.45, "forget": 0.0},
    },
    "dataset": "Answers v1",
    "dataset_sha256": "ef" * 32,
}
MASTERY_VALIDATION = {
    "kind": "mastery",
    "answers": 800,
    "students": 50,
    "auc": 0.74,
    "ece": 0.031,
    "base_rate_auc": 0.61,
    "split": {"train_students": 200, "test_students": 50},
    "limits": {"min_auc": 0.65, "max_ece": 0.1, "min_gain": 0.0},
    "passed": True,
    "failures": [],
}


def mastery_card(validation):
    return build_card(
        model={"name": "riverside-mastery", "version": "1", "algorithm": "bkt"},
        intended_use="",
        training=MASTERY_TRAINING,
        validation=validation,
        bias_report={},
        bundle={},
        approvals=[],
        task_type="mastery",
    )


def test_a_mastery_models_card_lists_its_skills_in_words_and_marks_degenerate_ones():
    card = mastery_card(MASTERY_VALIDATION)
    assert card["task"]["label"] == "Skill mastery (knowledge tracing)"
    assert card["intended_use"].startswith("Suggest which skill a student practises next")
    section = card["mastery"]
    assert [s["skill"] for s in section["skills"]] == ["decimals", "fractions"]
    assert section["degenerate"] == ["decimals"]  # guess 0.6 >= 1 - slip 0.55
    assert section["skills"][1]["answers"] == 2000
    assert section["validation"]["base_rate_auc"] == 0.61
    assert card["data"]["rows"] == 4000
    text = " ".join(card["limitations"])
    assert "risk score" not in text and "not a grade" in text
    assert "decimals: guess and slip are so high" in text
    md = to_markdown(card)
    assert "## Mastery" in md and "## Fairness" not in md and "Sensitive attributes" not in md
    assert "| Skill | Chance of knowing it before practice | Chance of learning it at each" in md
    assert "| fractions | 20% | 15% | 15% | 10% | 0% |" in md
    assert "| decimals (degenerate: a right answer does not show it is known) |" in md
    assert "| AUC of the next-answer predictions | 0.740 | at least 0.650 |" in md
    assert "served from its parameters" in md
    json.dumps(card)


def test_a_mastery_model_not_validated_says_so():
    card = mastery_card({})
    assert card["mastery"]["validation"] is None
    assert "This mastery model has not been validated on held-out students." in card["limitations"]
    assert "Not validated on held-out students yet." in to_markdown(card)


def test_the_binary_risk_card_has_no_scoring_or_mastery_section():
    card = build_card(
        model={}, intended_use="", training={}, validation={}, bias_report={}, bundle={},
        approvals=[],
    )  # fmt: skip
    assert card["scoring"] is None and card["mastery"] is None
