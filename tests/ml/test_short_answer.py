"""Short-answer scoring: the generator of rated answers, the scorer and its ONNX export (with a
real ONNX Runtime session), validation against human raters, the gate and the monitors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edumlops.ml.short_answer import (
    OnnxScorer,
    ParityError,
    ScoringError,
    agreement,
    export_scorer_onnx,
    group_smd,
    human_ceiling,
    length_drift,
    normalize_text,
    prepare_answers,
    scoring_gate,
    train_scorer,
    unsure_share,
    vocabulary_drift,
)
from edumlops.ml.short_answer_synth import PROMPTS, RaterBias, simulate_answers

SCALE = (0, 3)
N, TRAIN = 1500, 900  # one prompt: 900 answers to train on, 600 held out


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame.iloc[:TRAIN], frame.iloc[TRAIN:]


@pytest.fixture(scope="module")
def clean():
    train, test = split(simulate_answers(1, N, seed=0))
    answers = prepare_answers(train, scale=SCALE)
    scorer = train_scorer(answers.texts, answers.scores, scale=answers.scale)
    return train, test, scorer, scorer.score(test["text"])


@pytest.fixture(scope="module")
def biased():
    """Human raters take a point off every answer of the other_language group."""
    frame = simulate_answers(1, N, seed=0, rater_bias=RaterBias("other_language", shift=-1))
    train, test = split(frame)
    scorer = train_scorer(train["text"], train["score_1"], scale=SCALE)
    return train, test, scorer.score(test["text"])


@pytest.fixture(scope="module")
def exported(clean):
    _, test, scorer, _ = clean
    return export_scorer_onnx(scorer, test["text"])


# --- the generator ------------------------------------------------------------------------------
def test_same_seed_same_answers_and_another_seed_others():
    a = simulate_answers(2, 50, seed=3, rater_bias=RaterBias("other_language"))
    b = simulate_answers(2, 50, seed=3, rater_bias=RaterBias("other_language"))
    pd.testing.assert_frame_equal(a, b)
    assert not a["text"].equals(simulate_answers(2, 50, seed=4)["text"])


def test_answers_carry_their_columns_scale_and_a_share_of_second_ratings():
    frame = simulate_answers(2, 400, seed=1, second_rater_share=0.3)
    assert list(frame.columns) == [
        "answer_id", "student_id", "prompt_id", "text", "group",
        "true_score", "score_1", "score_2", "points",
    ]  # fmt: skip
    assert frame["answer_id"].is_unique and len(frame) == 800
    assert set(frame["prompt_id"]) == {"photosynthesis", "water_cycle"}
    for column in ("true_score", "score_1"):
        assert frame[column].between(0, 3).all() and frame[column].dtype == np.int64
    rated = frame["score_2"].notna()
    assert 0.25 < rated.mean() < 0.35
    assert frame.loc[rated, "score_2"].between(0, 3).all()
    assert set(frame["group"]) == {"english", "other_language"}
    # raters mostly agree with the truth, and are off by one point at most
    gap = (frame["score_1"] - frame["true_score"]).abs()
    assert gap.max() == 1 and 0.15 < gap.mean() < 0.3


def test_answers_with_more_points_name_more_key_concepts():
    frame = simulate_answers(["photosynthesis"], 400, seed=2, misspell_rate=0.0)
    phrases = [p for concept in PROMPTS["photosynthesis"].concepts for p in concept]
    named = frame["text"].map(lambda t: sum(p in t for p in phrases))
    means = named.groupby(frame["true_score"]).mean()
    assert means.is_monotonic_increasing and means[0] < 0.5 and means[3] >= 3


def test_bad_generator_arguments_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="Unknown prompt 'history'"):
        simulate_answers(["history"], 10)
    with pytest.raises(ValueError, match="names the group 'french'.*not one of the groups"):
        simulate_answers(1, 10, rater_bias=RaterBias("french"))
    with pytest.raises(ValueError, match="whole number of points other than 0"):
        RaterBias("english", shift=0)
    with pytest.raises(ValueError, match="second_rater_share must be in"):
        simulate_answers(1, 10, second_rater_share=1.5)


def test_a_planted_rater_bias_shows_as_a_group_smd_against_the_true_scores():
    frame = simulate_answers(2, 400, seed=5, rater_bias=RaterBias("other_language", shift=-1))
    smd = {r["group"]: r["smd"] for r in group_smd(frame["true_score"], frame["score_1"],
                                                   frame["group"]).groups}  # fmt: skip
    assert smd["other_language"] > 0.5  # the truth is a point above the biased humans
    assert abs(smd["english"]) < 0.1
    fair = simulate_answers(2, 400, seed=5)
    for row in group_smd(fair["true_score"], fair["score_1"], fair["group"]).groups:
        assert abs(row["smd"]) < 0.1


# --- the scorer ---------------------------------------------------------------------------------
def test_the_scorer_learns_the_rubric_on_held_out_answers(clean):
    _, test, scorer, scores = clean
    assert list(scorer.points) == [0, 1, 2, 3] and scorer.scale == SCALE
    assert agreement(test["true_score"], scores.scores, SCALE).qwk > 0.8
    assert agreement(test["score_1"], scores.scores, SCALE).qwk > 0.7
    assert np.allclose(scores.probabilities.sum(axis=1), 1)
    assert ((scores.expected >= 0) & (scores.expected <= 3)).all()
    best = scores.probabilities.argmax(axis=1)
    assert (scores.scores == scorer.points[best]).all()
    assert np.allclose(scores.expected, scores.probabilities @ np.arange(4))
    # a full answer outscores an empty-handed one, misspelt or not
    full, poor = scorer.score(
        ["Sunlight, CHLOROPHYL and carbon dioxide make glucose", "the plant grows in soil"]
    ).scores
    assert full >= 2 and poor == 0


def test_normalization_drops_accents_case_and_punctuation():
    assert normalize_text("  Chlorophýll!!  makes\tSUGAR (C6H12O6) ") == (
        "chlorophyll makes sugar c6h12o6"
    )
    assert normalize_text(None) == "" and normalize_text(float("nan")) == ""


# --- ONNX ---------------------------------------------------------------------------------------
def test_onnx_runtime_gives_the_same_scores_as_scikit_learn(clean, exported):
    _, test, scorer, scores = clean
    parity = exported.parity
    assert parity.rows == len(test) and parity.disagreeing_scores == 0
    assert parity.max_prob_diff < 1e-4 and parity.ok
    onnx = OnnxScorer(exported.model_bytes)
    assert list(onnx.points) == [0, 1, 2, 3] and onnx.scale == SCALE
    got = onnx.score(test["text"])
    assert (got.scores == scores.scores).all()
    assert np.abs(got.expected - scores.expected).max() < 1e-4
    odd = ["Évaporation; CONDENSATION!", "zzz unseen words qqq", "oxygen oxygen oxygen", "a"]
    assert (onnx.score(odd).scores == scorer.score(odd).scores).all()
    one = onnx.score(["chlorophyll uses sunlight and water"])
    assert one.scores.shape == (1,) and one.probabilities.shape == (1, 4)


def test_the_export_fails_when_the_runtimes_disagree(clean):
    _, test, scorer, _ = clean
    # float32 in ONNX Runtime against float64 in scikit-learn: a zero tolerance cannot hold
    with pytest.raises(ParityError, match=r"does not match scikit-learn: .* \(tolerance 0\)"):
        export_scorer_onnx(scorer, test["text"][:50], tolerance=0.0)


def test_unconvertible_settings_and_models_are_refused(clean):
    train, _, _, _ = clean
    scorer = train_scorer(train["text"][:200], train["score_1"][:200])
    scorer.pipeline.named_steps["features"].transformer_list[1][1].analyzer = "char_wb"
    with pytest.raises(ScoringError, match="analyzer='char_wb'.*converts only"):
        export_scorer_onnx(scorer, train["text"][:5])
    with pytest.raises(ScoringError, match="cannot load the scorer"):
        OnnxScorer(b"not an onnx model")


# --- validation against human raters ------------------------------------------------------------
def test_agreement_on_hand_made_scores():
    same = agreement([0, 1, 2, 3], [0, 1, 2, 3], SCALE)
    assert same.qwk == pytest.approx(1) and same.exact == 1 and same.correlation == 1
    off = agreement([0, 1, 2, 3], [1, 2, 3, 2], SCALE)
    assert off.exact == 0 and off.adjacent == 1 and off.qwk < 1
    wide = agreement([0, 0, 3, 3], [3, 3, 0, 0], SCALE)
    assert wide.adjacent == 0 and wide.qwk < 0
    ceiling = human_ceiling([1, 2, 3, 0], pd.array([1, pd.NA, 2, pd.NA], dtype="Int64"), SCALE)
    assert ceiling.n == 2 and ceiling.exact == 0.5
    assert human_ceiling([1, 2], [None, None]) is None


def test_group_smd_by_hand():
    machine, human = [2, 2, 1, 1], [1, 2, 1, 0]
    result = group_smd(machine, human, ["a", "a", "b", "b"], min_size=1)
    sd = np.std(human, ddof=1)
    rows = {r["group"]: r for r in result.groups}
    assert rows["a"]["smd"] == pytest.approx(0.5 / sd)
    assert rows["b"]["smd"] == pytest.approx(0.5 / sd)
    pooled = np.sqrt((np.var(machine, ddof=1) + np.var(human, ddof=1)) / 2)
    assert result.overall == pytest.approx(0.5 / pooled)


def test_the_gate_passes_a_good_scorer_on_fair_ratings(clean):
    _, test, _, scores = clean
    gate = scoring_gate(
        test["score_1"], scores.scores, second_human=test["score_2"], groups=test["group"],
        scale=SCALE,
    )  # fmt: skip
    assert gate.passed and gate.failures == [], gate.reason
    assert gate.agreement.qwk >= 0.7 and gate.ceiling is not None and gate.ceiling.n >= 100
    assert len(gate.reasons) == 5  # QWK, the ceiling, overall SMD and one per group
    assert any(r.startswith("Machine–human QWK is") for r in gate.reasons)
    assert any(r.startswith("In group other_language") for r in gate.reasons)
    assert json.loads(json.dumps(gate.to_dict()))["smd"]["groups"][0]["group"] == "english"


def test_the_gate_fails_when_the_human_raters_are_biased_against_a_group(biased):
    _, test, scores = biased
    gate = scoring_gate(
        test["score_1"], scores.scores, second_human=test["score_2"], groups=test["group"],
        scale=SCALE,
    )  # fmt: skip
    assert not gate.passed and gate.reasons[: len(gate.failures)] == gate.failures
    (sentence,) = [r for r in gate.failures if r.startswith("In group other_language")]
    assert "SD above the human scores" in sentence
    assert sentence.endswith("re-check the human scores of this group before retraining.")


def test_the_gate_fails_a_bad_model_and_says_why(clean):
    _, test, _, _ = clean
    constant = np.full(len(test), 1)
    gate = scoring_gate(test["score_1"], constant, second_human=test["score_2"], scale=SCALE)
    assert not gate.passed
    first = gate.failures[0]
    assert first.startswith("Machine–human QWK is 0.000") and "(below the 0.70 required)" in first
    assert any("below it (allowed: 0.10 below)" in r for r in gate.failures)


def test_the_gate_skips_small_groups_and_a_thin_ceiling():
    human = [0, 1, 2, 3] * 10
    gate = scoring_gate(
        human, human, second_human=[0] * 5 + [None] * 35, groups=["a"] * 36 + ["b"] * 4,
        scale=SCALE,
    )  # fmt: skip
    assert gate.passed
    assert any("Group b has 4 answers (fewer than 20): insufficient data" in r
               for r in gate.reasons)  # fmt: skip
    assert any("Only 5 answers have a second human score" in r for r in gate.reasons)


# --- bad input ----------------------------------------------------------------------------------
def frame_of(**columns) -> pd.DataFrame:
    base = {"text": ["sunlight and water", "chlorophyll", "soil"], "score_1": [2, 1, 0]}
    return pd.DataFrame({**base, **columns})


@pytest.mark.parametrize(
    "frame, kwargs, message",
    [
        (frame_of(), {"score": "human"}, r"no column 'human' \(columns: text, score_1\)"),
        (frame_of(score_1=[2, 1.5, 0]), {}, r"not whole points \(e.g. 1.5\)"),
        (frame_of(score_1=[2, "two", 0]), {}, r"not numbers \(e.g. 'two'\)"),
        (frame_of(score_1=[2, None, 0]), {}, r"is empty in 1 row\(s\): every answer needs"),
        (frame_of(text=["ok", "  ?! ", "x"]), {}, r"empty or have no letters .* row 1\)"),
        (frame_of(score_1=[1, 1, 1]), {}, r"has the score 1: a scorer needs"),
        (frame_of(score_1=[2, 1, 5]), {"scale": SCALE}, r"outside the scale 0..3 \(e.g. 5\)"),
        (frame_of().iloc[:0], {}, r"no answers"),
        ([1, 2], {}, r"needs a pandas DataFrame, not list"),
    ],
)
def test_bad_answers_are_refused_with_the_problem_and_the_fix(frame, kwargs, message):
    with pytest.raises(ScoringError, match=message):
        prepare_answers(frame, **kwargs)


def test_prepare_answers_keeps_the_second_rater_and_groups():
    frame = frame_of(score_2=pd.array([2, pd.NA, 1], dtype="Int64"), group=["a", "b", "a"])
    answers = prepare_answers(frame, second_score="score_2", group="group")
    assert answers.texts == ["sunlight and water", "chlorophyll", "soil"]
    assert answers.scale == (0, 2) and list(answers.groups) == ["a", "b", "a"]
    assert np.isnan(answers.second_scores[1]) and answers.second_scores[2] == 1


def test_bad_scores_for_validation_are_refused():
    with pytest.raises(
        ScoringError, match=r"human has 1 value\(s\) that are not numbers \(e.g. 'x'\)"
    ):
        agreement([1, "x", 2], [1, 2, 2])
    with pytest.raises(ScoringError, match="human has 3 scores and machine 2"):
        agreement([1, 2, 3], [1, 2])
    with pytest.raises(ScoringError, match="machine has scores that are not whole points"):
        agreement([1, 2], [1.5, 2])
    with pytest.raises(ScoringError, match="No answer has both scores"):
        agreement([1, None], [None, 2])
    with pytest.raises(ScoringError, match="groups has 2 values for 3 scores"):
        group_smd([1, 2, 3], [1, 2, 3], ["a", "b"])


def test_bad_scorer_calls_are_refused(clean):
    _, _, scorer, _ = clean
    with pytest.raises(ScoringError, match="2 answers but 1 scores"):
        train_scorer(["a b", "c d"], [1])
    with pytest.raises(ScoringError, match="same score"):
        train_scorer(["a b", "c d"], [1, 1])
    with pytest.raises(ScoringError, match="not one string"):
        scorer.score("one answer")


# --- monitors -----------------------------------------------------------------------------------
def test_length_drift_fires_on_longer_answers_only(clean):
    train, test, _, _ = clean
    same = length_drift(train["text"], test["text"])
    assert not same.drifted and same.statistic < 0.1
    longer = simulate_answers(1, 300, seed=9, filler=(15, 30))["text"]
    shifted = length_drift(train["text"], longer)
    assert shifted.drifted and shifted.statistic > 0.2
    assert shifted.message.startswith("Answer length PSI is") and "above 0.2" in shifted.message
    few = length_drift(train["text"], test["text"][:5])
    assert not few.drifted and few.message.startswith("Insufficient data")


def test_vocabulary_drift_fires_on_new_words_only(clean):
    train, test, scorer, _ = clean
    same = vocabulary_drift(train["text"], test["text"], vocabulary=scorer.vocabulary)
    assert not same.drifted and abs(same.statistic) < 0.05
    other = simulate_answers(["democracy"], 200, seed=9)["text"]
    moved = vocabulary_drift(train["text"], other, vocabulary=scorer.vocabulary)
    assert moved.drifted and moved.current["oov_share"] > 0.3
    assert "most frequent new words" in moved.message
    assert set(moved.current["new_words"]) & {"elections", "voting", "government", "country"}


def test_unsure_answers_are_counted_and_routed_to_a_human(clean):
    probabilities = [[0.5, 0.45, 0.05], [0.9, 0.05, 0.05], [0.1, 0.3, 0.6], [0.34, 0.33, 0.33]]
    unsure = unsure_share(probabilities, margin=0.2)
    assert unsure.indexes == [0, 3] and unsure.share == 0.5 and unsure.count == 2
    assert "route them to a human rater" in unsure.message
    _, _, _, scores = clean
    everything = unsure_share(scores.probabilities, margin=1.0)
    assert everything.share == 1
    with pytest.raises(ScoringError, match="margin must be"):
        unsure_share(probabilities, margin=2)
    with pytest.raises(ScoringError, match="one column per score point"):
        unsure_share([0.2, 0.8])


def test_importing_short_answer_loads_no_django_and_no_model_library():
    code = (
        "import json, sys\nimport edumlops.ml.short_answer, edumlops.ml.short_answer_synth\n"
        "print(json.dumps([m for m in ('django', 'sklearn', 'skl2onnx', 'onnxruntime')"
        " if m in sys.modules]))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
