"""Knowledge tracing: answer logs from a planted BKT truth, pyBKT recovering it, our forward
filter against pyBKT's own prediction, held-out validation, mastery serving, the monitors, and
the OULAD assessments as an answer log.

pyBKT's EM is pure Python (a loop per answer), so the logs stay small and the fits that several
tests share run once per module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edumlops.ml import knowledge_tracing as kt
from edumlops.ml import knowledge_tracing_checks as checks
from edumlops.ml import oulad

TRUTH = {
    "fractions": kt.BKTParams(prior=0.2, learn=0.15, guess=0.15, slip=0.10),
    "decimals": kt.BKTParams(prior=0.35, learn=0.25, guess=0.20, slip=0.08),
}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return kt.simulate_answers(TRUTH, students=250, answers_per_skill=8, seed=11)


@pytest.fixture(scope="module")
def validated(log):
    """A fit on 200 students' answers, scored on the other 50."""
    return checks.validate_bkt(log, test_share=0.2, seed=0, num_fits=1)


@pytest.fixture(scope="module")
def planted() -> kt.BKTModel:
    """A retraining after the decimals items became guessable (guess 0.20 -> 0.45)."""
    truth = {**TRUTH, "decimals": replace(TRUTH["decimals"], guess=0.45)}
    return kt.fit_bkt(kt.simulate_answers(truth, 150, 8, seed=12), seed=0, num_fits=1)


def _pybkt_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A log under pyBKT's default column names."""
    names = {"student": "user_id", "skill": "skill_name", "order": "order_id"}
    return frame[["student", "skill", "order", "correct"]].rename(columns=names)


# --- the generator -------------------------------------------------------------------------------


def test_generated_logs_have_the_columns_and_follow_the_truth(log):
    assert list(log.columns) == ["student", "skill", "item", "order", "correct", "mastered"]
    assert len(log) == 250 * 2 * 8 and log["student"].nunique() == 250
    assert set(log["correct"]) == {0, 1} and set(log["skill"]) == set(TRUTH)
    assert log.groupby("student")["order"].apply(lambda o: list(o) == list(range(16))).all()
    # answers follow the hidden state: wrong while mastered is a slip, right while not a guess
    for name, p in TRUTH.items():
        part = log[log["skill"] == name]
        assert abs(1 - part.loc[part["mastered"] == 1, "correct"].mean() - p.slip) < 0.04
        assert abs(part.loc[part["mastered"] == 0, "correct"].mean() - p.guess) < 0.04
    # students learn: more of them have mastered a skill by their last answer than at the first
    step = log.groupby(["student", "skill"]).cumcount()
    assert log.loc[step == 7, "mastered"].mean() > log.loc[step == 0, "mastered"].mean() + 0.4


def test_same_seed_same_log_and_an_int_draws_a_plausible_truth():
    a = kt.simulate_answers(3, 20, (2, 6), seed=4)
    assert a.equals(kt.simulate_answers(3, 20, (2, 6), seed=4))
    assert not a.equals(kt.simulate_answers(3, 20, (2, 6), seed=5))
    counts = a.groupby(["student", "skill"]).size()
    assert counts.min() >= 2 and counts.max() <= 6
    truth = kt.random_ground_truth(3, seed=4)
    assert list(truth) == ["skill 1", "skill 2", "skill 3"] == sorted(a["skill"].unique())
    assert all(p.guess < 0.3 and p.slip < 0.3 and 0.05 <= p.learn <= 0.4 for p in truth.values())
    assert checks.item_difficulty_check(kt.BKTModel(skills=truth)) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"skills": 0}, "at least one skill"),
        ({"students": 0}, "at least one student"),
        ({"answers_per_skill": (5, 2)}, "1 <= low <= high"),
        ({"skills": {"a": 0.3}}, "BKTParams"),
    ],
)
def test_the_generator_refuses_bad_arguments(kwargs, message):
    args = {"skills": 2, "students": 5, "answers_per_skill": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        kt.simulate_answers(**args)


def test_a_parameter_that_is_not_a_probability_is_refused():
    with pytest.raises(ValueError, match=r"guess=1\.3 is not a probability"):
        kt.BKTParams(prior=0.1, learn=0.1, guess=1.3, slip=0.1)


# --- fitting -------------------------------------------------------------------------------------


# ~3x the root-mean-square error of fits on 200 students x 8 answers per skill, measured over 8
# seeds of this truth (prior 0.05, learn 0.018, guess 0.028, slip 0.014): a fit that returned
# its random start, or swapped guess and slip, would miss them.
TOLERANCE = {"prior": 0.15, "learn": 0.06, "guess": 0.08, "slip": 0.05}


def test_pybkt_recovers_the_planted_parameters(validated):
    model, _ = validated
    assert set(model.skills) == set(TRUTH)
    for name, truth in TRUTH.items():
        fitted = model.skills[name]
        for parameter, tolerance in TOLERANCE.items():
            gap = abs(getattr(fitted, parameter) - getattr(truth, parameter))
            assert gap < tolerance, (name, parameter, fitted)
        assert fitted.forget == 0.0
    assert model.trained_on["fractions"] == {"answers": 1600, "students": 200}
    assert model.info["library"] == "pyBKT" and model.info["num_fits"] == 1


@pytest.fixture
def pybkt_model_class(monkeypatch):
    """pyBKT's own `Model`, made to run beside scikit-learn 1.9 and NumPy 2.4 for a comparison:
    while pyBKT imports, sklearn's private `_log_loss` answers lists with the TypeError pyBKT's
    metric probe expects; and EM_fit's log-likelihood comes back as a number, which its
    `log_likelihoods[i][0] = ...` can store. pyBKT's computations are untouched."""
    from pyBKT.fit import EM_fit

    if "pyBKT.models" not in sys.modules:
        import sklearn.metrics._classification as classification

        original = classification._log_loss

        def answers_lists_with_type_error(labels, proba, **kwargs):
            if not hasattr(proba, "dtype"):
                raise TypeError("lists")
            return original(labels, proba, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(classification, "_log_loss", answers_lists_with_type_error)
            import pyBKT.models  # noqa: F401
    run = EM_fit.run

    def run_with_a_number(*args, **kwargs):
        result = run(*args, **kwargs)
        result["total_loglike"] = float(np.asarray(result["total_loglike"]).reshape(-1)[0])
        return result

    monkeypatch.setattr(EM_fit, "run", run_with_a_number)
    return sys.modules["pyBKT.models"].Model


def test_fit_bkt_gives_what_pybkt_model_fit_gives(pybkt_model_class):
    frame = kt.simulate_answers({"ratios": TRUTH["fractions"]}, 40, 6, seed=21)
    ours = kt.fit_bkt(frame, forgets=True, seed=3, num_fits=2)
    theirs = pybkt_model_class(seed=3, num_fits=2, parallel=False)
    theirs.fit(data=_pybkt_frame(frame), forgets=True)
    values = theirs.params()["value"]
    names = {"prior": "prior", "learns": "learn", "guesses": "guess", "slips": "slip"}
    for their_name, our_name in {**names, "forgets": "forget"}.items():
        expected = values.loc[("ratios", their_name, "default")]
        assert getattr(ours.skills["ratios"], our_name) == pytest.approx(expected, abs=1e-12)
    assert ours.skills["ratios"].forget > 0.0


def test_forward_filter_matches_pybkt_predict_onestep():
    from pyBKT.fit import predict_onestep
    from pyBKT.util import data_helper

    truth = {**TRUTH, "decimals": replace(TRUTH["decimals"], forget=0.05)}
    frame = kt.simulate_answers(truth, 40, (3, 12), seed=2)
    frame.index = frame.index * 3 + 7  # an index that is not positions
    ours = kt.predict_answers(kt.BKTModel(skills=truth, forgets=True), frame)
    assert list(ours.index) == list(frame.index)
    pybkt_data = data_helper.convert_data(_pybkt_frame(frame), ".*")
    for name, data in pybkt_data.items():
        p = truth[name]
        params = {
            "prior": p.prior,
            "learns": np.array([p.learn]),
            "forgets": np.array([p.forget]),
            "guesses": np.array([p.guess]),
            "slips": np.array([p.slip]),
        }
        correct, states = predict_onestep.run(params, data, parallel=False)
        rows = ours.loc[data["index"]]
        np.testing.assert_allclose(rows["p_correct"], correct, atol=1e-9)
        np.testing.assert_allclose(rows["p_mastered"], states[1], atol=1e-9)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="order"), r"lack the column\(s\) 'order' \(order\)"),
        (lambda f: f.assign(correct=f["correct"] * 2), "must be 0 or 1"),
        (lambda f: f.assign(correct="yes"), "must be 0 or 1"),
        (lambda f: f.assign(order=f["order"].astype(str)), "numbers or timestamps"),
        (lambda f: f.assign(skill=f["skill"].where(f.index > 3)), "4 answer\\(s\\) have no skill"),
        (lambda f: f.iloc[:0], "no answers"),
        (
            lambda f: f[(f["skill"] == "fractions") | (f.index < 20)],
            "'decimals' \\(\\d+ answers\\)",
        ),
        (lambda f: f.assign(correct=(f["skill"] == "fractions").astype(int)), "all correct"),
        (lambda f: f.to_dict(), "must be a pandas DataFrame"),
    ],
)
def test_fit_refuses_logs_bkt_cannot_read(log, change, message):
    with pytest.raises(ValueError, match=message):
        kt.fit_bkt(change(log.copy()))


def test_columns_are_named_by_the_caller(log):
    renamed = log.rename(columns={"student": "user", "order": "when"})
    with pytest.raises(ValueError, match="student=, skill=, correct= and order="):
        kt.predict_answers(kt.BKTModel(skills=TRUTH), renamed)
    out = kt.predict_answers(kt.BKTModel(skills=TRUTH), renamed, student="user", order="when")
    assert out["p_correct"].equals(kt.predict_answers(kt.BKTModel(skills=TRUTH), log)["p_correct"])


def test_predictions_come_back_in_the_rows_order_even_with_a_repeated_index(log):
    part = log.iloc[:40]
    twice = pd.concat([part.assign(student="again"), part]).iloc[::-1]
    out = kt.predict_answers(kt.BKTModel(skills=TRUTH), twice)
    assert len(out) == 80 and list(out.index) == list(twice.index)
    assert (out["student"].to_numpy() == twice["student"].to_numpy()).all()
    assert (out["order"].to_numpy() == twice["order"].to_numpy()).all()


# --- validation on held-out students -------------------------------------------------------------


def test_held_out_students_are_predicted_well_and_the_calibration_adds_up(log, validated):
    model, report = validated
    train, test = checks.split_students(log, test_share=0.2, seed=0)
    assert not set(train["student"]) & set(test["student"])
    assert report.split["test_students"] == 50 and report.answers == len(test) == 800
    assert report.auc is not None and report.auc > 0.7
    assert sum(b["count"] for b in report.calibration) == report.answers
    assert len(report.calibration) == 10 and report.ece < 0.08
    # better than predicting each skill's share correct
    rate = test["skill"].map(train.groupby("skill")["correct"].mean())
    y = test["correct"]
    base = -np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate))
    assert report.log_loss < base - 0.05
    assert 0 < report.brier < 0.25
    assert [s["skill"] for s in report.per_skill] == ["decimals", "fractions"]
    assert all(s["auc"] > 0.65 for s in report.per_skill)
    assert json.loads(json.dumps(report.to_dict()))["answers"] == 800


def test_calibration_table_counts_every_prediction_once():
    y = [0, 1, 1, 0, 1]
    table = checks.calibration_table(y, [0.0, 0.05, 0.5, 0.95, 1.0], bins=10)
    assert [b["count"] for b in table] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert table[1]["mean_predicted"] is None and table[9]["observed"] == 0.5
    ece = checks.expected_calibration_error(table)
    assert ece == pytest.approx((2 * 0.475 + 1 * 0.5 + 2 * 0.475) / 5)


def test_answers_of_a_skill_the_model_does_not_know_are_refused(log):
    model = kt.BKTModel(skills={"fractions": TRUTH["fractions"]})
    with pytest.raises(ValueError, match="not trained on: 'decimals'. It knows 'fractions'"):
        checks.evaluate_bkt(model, log)


# --- serving -------------------------------------------------------------------------------------


def test_mastery_rises_with_right_answers_and_falls_with_wrong_ones():
    model = kt.BKTModel(skills=TRUTH)
    start = kt.mastery(model, [])
    assert start["skills"]["fractions"]["p_mastered"] == TRUTH["fractions"].prior
    seen = [start["skills"]["fractions"]["p_mastered"]]
    answers: list = []
    for _ in range(4):
        answers.append(("fractions", 1))
        seen.append(kt.mastery(model, answers)["skills"]["fractions"]["p_mastered"])
    assert seen == sorted(seen) and seen[-1] > 0.95
    after_wrong = kt.mastery(model, [*answers, {"skill": "fractions", "correct": False}])
    assert after_wrong["skills"]["fractions"]["p_mastered"] < seen[-1]
    out = kt.mastery(model, answers)
    assert out["skills"]["fractions"]["mastered"] and out["skills"]["fractions"]["answers"] == 4
    # never answered: still at its prior, and the one left to practise
    assert out["skills"]["decimals"] == {
        "p_mastered": TRUTH["decimals"].prior,
        "mastered": False,
        "answers": 0,
        "p_correct_next": TRUTH["decimals"].p_correct(TRUTH["decimals"].prior),
    }
    assert out["next_skill"] == "decimals" and "'decimals' is not mastered" in out["reason"]
    assert json.loads(json.dumps(out)) == out


def test_the_next_skill_is_the_one_with_the_largest_expected_gain():
    model = kt.BKTModel(skills=TRUTH)
    # at their priors: fractions gains 0.8 x 0.15 = 0.12, decimals 0.65 x 0.25 = 0.1625
    assert kt.mastery(model, [])["next_skill"] == "decimals"
    # even at P(mastered) = 0, fractions gains at most 0.15: decimals stays first
    wrong = [("fractions", 0)] * 3
    assert kt.mastery(model, wrong)["next_skill"] == "decimals"
    right = [("decimals", 1)] * 3
    out = kt.mastery(model, right)
    p = out["skills"]["fractions"]["p_mastered"]
    assert out["next_skill"] == "fractions" and f"+{(1 - p) * 0.15:.3f}" in out["reason"]
    done = kt.mastery(model, [("decimals", 1)] * 4 + [("fractions", 1)] * 4)
    assert done["next_skill"] is None and "Every skill is mastered" in done["reason"]


def test_a_skill_whose_answers_cannot_show_mastery_is_never_suggested():
    # CCC Exam on OULAD fits like this: one exam per student, nothing to learn from
    skills = {**TRUTH, "exam": kt.BKTParams(prior=0.5, learn=1.0, guess=0.5, slip=0.5)}
    model = kt.BKTModel(skills=skills)
    assert kt.mastery(model, [])["next_skill"] == "decimals"
    done = kt.mastery(model, [("decimals", 1)] * 4 + [("fractions", 1)] * 4)
    assert done["next_skill"] is None and "'exam' have degenerate parameters" in done["reason"]


def test_an_unknown_skill_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="Unknown skill 'algebra': this model knows 'decimals', "):
        kt.mastery(kt.BKTModel(skills=TRUTH), [("fractions", 1), ("algebra", 1)])


@pytest.mark.parametrize(
    "answer, message",
    [
        (("fractions", 2), r"Answer 1 \('fractions'\): correct must be 0 or 1"),
        (("fractions", "yes"), "correct must be 0 or 1"),
        ("fractions", "must be a pair"),
        ({"skill": "fractions"}, 'needs "skill" and "correct"'),
    ],
)
def test_a_malformed_answer_is_refused_by_position(answer, message):
    with pytest.raises(ValueError, match=message):
        kt.mastery(kt.BKTModel(skills=TRUTH), [answer])


def test_the_model_goes_to_json_and_back(validated):
    model, _ = validated
    back = kt.BKTModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back == model
    answers = [("fractions", 1), ("decimals", 0), ("fractions", 1)]
    assert kt.mastery(back, answers) == kt.mastery(model, answers)
    with pytest.raises(ValueError, match="not a stored BKT model"):
        kt.BKTModel.from_dict({"skills": {}})
    with pytest.raises(ValueError, match="lack slip"):
        kt.BKTModel.from_dict(
            {"kind": "bkt", "format": 1, "skills": {"a": {"prior": 0.1, "learn": 0.1, "guess": 0}}}
        )


def test_serving_needs_neither_pybkt_nor_scikit_learn():
    tree = ast.parse(Path(kt.__file__).read_text())
    top = {
        name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        )
    }
    assert top <= {
        "__future__",
        "math",
        "time",
        "collections",
        "dataclasses",
        "typing",
        "numpy",
        "pandas",
    }
    code = (
        "import json, sys; from edumlops.ml import knowledge_tracing as kt;"
        "m = kt.BKTModel.from_dict(json.loads(sys.argv[1]));"
        "print(kt.mastery(m, [('fractions', 1)])['next_skill']);"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('pyBKT', 'sklearn')))"
    )
    stored = json.dumps(kt.BKTModel(skills=TRUTH).to_dict())
    out = subprocess.run(
        [sys.executable, "-c", code, stored], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split("\n")[:2] == ["decimals", "[]"]


# --- monitors ------------------------------------------------------------------------------------


def test_a_refit_on_the_same_answers_does_not_drift(log, validated):
    model, _ = validated
    train, _ = checks.split_students(log, test_share=0.2, seed=0)
    refit = kt.fit_bkt(train, seed=1, num_fits=1)  # another random start for EM
    changes = checks.parameter_drift(model, refit)
    assert len(changes) == 2 * 5 and not [c for c in changes if c.flagged]
    assert max(abs(c.change) for c in changes) < 0.01  # EM finds the same optimum
    assert not [c for c in checks.parameter_drift(model, refit, tolerance=0.01) if c.flagged]


def test_a_planted_change_drifts_and_makes_the_skill_too_easy(validated, planted):
    model, _ = validated
    changes = checks.parameter_drift(model, planted)
    flagged = [(c.skill, c.parameter) for c in changes if c.flagged]
    assert flagged == [("decimals", "guess")]
    (guess,) = [c for c in changes if c.flagged]
    assert guess.change > 0.15 and "decimals' guess moved from" in guess.reason
    assert checks.item_difficulty_check(model) == []
    flags = checks.item_difficulty_check(planted)
    assert [(f.skill, f.verdict, f.parameter) for f in flags] == [("decimals", "too_easy", "guess")]
    assert "too easy" in flags[0].reason and flags[0].limit == 0.3


def test_added_and_dropped_skills_are_flagged():
    before = kt.BKTModel(skills={"fractions": TRUTH["fractions"]})
    after = kt.BKTModel(skills={"decimals": TRUTH["decimals"]})
    changes = checks.parameter_drift(before, after, tolerance={"guess": 0.2})
    assert {(c.skill, c.reason) for c in changes} == {
        ("decimals", "'decimals': new skill."),
        ("fractions", "'fractions': skill no longer in the model."),
    }
    assert all(c.flagged for c in changes)
    with pytest.raises(ValueError, match="Unknown parameter\\(s\\) guesses"):
        checks.parameter_drift(before, after, tolerance={"guesses": 0.2})


def test_hard_and_degenerate_skills_are_flagged_with_a_reason():
    model = kt.BKTModel(
        skills={
            "slippery": kt.BKTParams(prior=0.3, learn=0.2, guess=0.1, slip=0.4),
            "unlearnable": kt.BKTParams(prior=0.3, learn=0.001, guess=0.1, slip=0.1),
            "upside down": kt.BKTParams(prior=0.3, learn=0.2, guess=0.7, slip=0.5),
        }
    )
    flags = checks.item_difficulty_check(model)
    assert [(f.skill, f.verdict, f.parameter) for f in flags] == [
        ("slippery", "too_hard", "slip"),
        ("unlearnable", "too_hard", "learn"),
        ("upside down", "degenerate", "guess"),
        ("upside down", "too_easy", "guess"),
        ("upside down", "too_hard", "slip"),
    ]
    assert all(f.reason.startswith(f"'{f.skill}'") for f in flags)


# --- OULAD ---------------------------------------------------------------------------------------


def test_oulad_assessments_become_an_answer_log():
    frame = oulad.load_oulad_assessments()
    assert frame.attrs["dropped"] == {"rows_read": 173_912, "without_score": 173, "banked": 1908}
    assert len(frame) == 173_912 - 173 - 1908 == 171_831
    assert frame["student"].nunique() == 23_291
    assert 0.95 < frame["correct"].mean() < 0.96
    assert frame["skill"].nunique() == 14 and {"AAA TMA", "FFF CMA", "DDD Exam"} <= set(
        frame["skill"]
    )
    assert ((frame["score"] >= 40) == (frame["correct"] == 1)).all()
    first = frame[frame["student"] == frame["student"].iloc[0]]
    assert list(first["order"]) == list(range(len(first)))
    assert first["date_submitted"].is_monotonic_increasing  # one presentation here
    # the forward filter reads the log as it is
    skills = {name: TRUTH["fractions"] for name in frame["skill"].unique()}
    predicted = kt.predict_answers(kt.BKTModel(skills=skills), frame)
    assert len(predicted) == len(frame) and predicted["p_correct"].between(0, 1).all()
    assert (predicted.groupby("student")["p_mastered"].first() == 0.2).all()


def test_the_oulad_loader_names_a_wrong_file(tmp_path):
    wrong = tmp_path / "studentAssessment.csv"
    wrong.write_text("id_student,score\n1,50\n")
    with pytest.raises(ValueError, match="lacks id_assessment, date_submitted, is_banked"):
        oulad.load_oulad_assessments(wrong)
    with pytest.raises(FileNotFoundError, match="see data/oulad/README.md"):
        oulad.load_oulad_assessments(tmp_path / "nowhere.csv")
