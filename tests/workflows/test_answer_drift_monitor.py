"""Answer drift monitor, run step by step in this process (a real database, a real MLflow store
and ONNX Runtime, no broker): a scorer trained on two prompts' answers is given new answers to
other prompts and longer ones (length and vocabulary drift, alerted with what to do), and new
answers to its own prompts (nothing flagged); the unsure answers' row numbers are listed and
queued once for a teacher with their row (its sensitive columns kept, not shown); answers
without the scorer's text column, a scorer trained before the reference was kept and a model
that is not a scorer are refused saying what to do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edumlops.ml.short_answer_synth import simulate_answers
from edumlops.monitoring import checks
from edumlops.monitoring.models import Alert
from edumlops.registry import reviews
from edumlops.registry.models import AnswerReview, ModelVersion
from tests.workflows.conftest import edge, node
from tests.workflows.test_scorer_blocks import logs, run_graph, store
from workflows.blocks.base import BlockError
from workflows.blocks.monitoring import AnswerDriftMonitorBlock

__all__ = ["run_graph"]  # the fixture, shared with the scorer blocks' tests

TRAINED_ON = ["photosynthesis", "water_cycle"]


def answers(prompts=TRAINED_ON, per_prompt=300, seed=5, **kwargs):
    return simulate_answers(prompts, answers_per_prompt=per_prompt, seed=seed, **kwargs)


def monitor_graph(train_version, new_version, **params):
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=train_version.pk),
        node("split", "split", method="stratified", test_share=0.25, seed=0),
        node("scorer", "train_text_scorer", scale="0..3"),
        node("new", "dataset", dataset_version=new_version.pk),
        node("monitor", "answer_drift_monitor", **params),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("start", "start", "new", "start"),
        edge("data", "dataset", "split", "dataset"),
        edge("split", "train", "scorer", "train"),
        edge("split", "test", "scorer", "test"),
        edge("scorer", "model", "monitor", "model"),
        edge("new", "dataset", "monitor", "answers"),
    ]
    return {"nodes": nodes, "edges": edges}


def run(district, run_graph, new, **params):
    steps = run_graph(
        monitor_graph(store(district, answers()), store(district, new, name="New"), **params)
    )
    assert steps["scorer"].status == "succeeded", steps["scorer"].reason
    return steps


def test_answers_to_other_prompts_and_longer_drift_in_length_and_vocabulary(district, run_graph):
    new = answers(["fractions", "democracy"], per_prompt=150, seed=9, filler=(20, 30))
    steps = run(district, run_graph, new)
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    by_kind = {r["kind"]: r for r in report["results"]}
    assert by_kind["length"]["flagged"] and by_kind["length"]["value"] > 0.2
    assert by_kind["vocabulary"]["flagged"] and by_kind["vocabulary"]["value"] > 0.1
    assert report["summary"]["answers"] == 300
    length = Alert.objects.get(monitor="answers", cause__endswith=": length")
    assert length.school is None and length.pk == by_kind["length"]["alert"]
    assert "Answer length PSI is" in length.message and "retrain the scorer" in length.message
    vocabulary = Alert.objects.get(monitor="answers", cause__endswith=": vocabulary")
    assert "outside the training vocabulary" in vocabulary.message
    assert "words the scorer never saw" in vocabulary.message
    assert step.metrics["length_psi"] > 0.2 and step.metrics["new_word_rise"] > 0.1
    assert step.metrics["new_alerts"] == Alert.objects.filter(monitor="answers").count() >= 2
    assert "300 new answers compared with the training answers of" in logs(step)


def test_new_answers_to_the_same_prompts_flag_nothing(district, run_graph):
    steps = run(district, run_graph, answers(per_prompt=150, seed=8))
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    by_kind = {r["kind"]: r for r in step.outputs["report"]["results"]}
    assert not by_kind["length"]["flagged"] and by_kind["length"]["value"] < 0.1
    assert not by_kind["vocabulary"]["flagged"] and by_kind["vocabulary"]["value"] < 0.05
    assert not by_kind["unsure"]["flagged"], by_kind["unsure"]
    assert not Alert.objects.filter(monitor="answers").exists()


def test_unsure_answers_are_listed_by_row_for_a_teacher(district, run_graph):
    new = answers(per_prompt=150, seed=8)
    steps = run(district, run_graph, new, max_unsure_share=0.0, margin=0.5)
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    rows = report["unsure_rows"]
    assert rows and rows == sorted(rows) and max(rows) < len(new)
    assert report["summary"]["unsure"] == len(rows) == report["unsure_rows_listed"]
    alert = Alert.objects.get(monitor="answers", cause__endswith=": unsure")
    assert f"The report lists {len(rows)} of their row numbers" in alert.message
    assert "Send the unsure answers" in alert.message
    assert "Unsure answers to send to a teacher (row numbers from 0)" in logs(step)


def test_unsure_answers_are_queued_once_for_a_teacher_with_their_row(district, run_graph):
    new = answers(per_prompt=150, seed=8)
    steps = run(district, run_graph, new, max_unsure_share=0.0, margin=0.5)
    step = steps["monitor"]
    report = step.outputs["report"]
    rows = report["unsure_rows"]
    model = ModelVersion.objects.get(pk=report["model_version"])
    queued = list(AnswerReview.objects.filter(model_version=model).order_by("row"))
    assert [r.row for r in queued] == rows and report["summary"]["sent_to_teachers"] == len(rows)
    assert step.metrics["sent_to_teachers"] == len(rows)
    version = queued[0].dataset_version
    assert version.dataset.name == "New" and {r.source for r in queued} == {"monitor"}
    first = queued[0]
    source = new.iloc[first.row]
    assert first.text == source["text"] and first.row_values["prompt_id"] == source["prompt_id"]
    assert first.row_values["group"] == source["group"]  # kept to go back with the score
    shown = reviews.shown_values(first)
    assert "group" not in shown and shown["prompt_id"] == source["prompt_id"]  # not shown
    alert = Alert.objects.get(monitor="answers", cause__endswith=": unsure")
    assert f"{len(rows)} were queued on the Answers to rate page" in alert.message
    assert f"{len(rows)} of them queued on the Answers to rate page" in logs(step)

    # the same rows checked again are not queued twice; off, nothing is queued
    params = checks.AnswerDriftParams(max_unsure_share=0.0, margin=0.5)
    again = checks.check_answer_drift(district, model, new, params, dataset_version=version)
    assert again.sent_to_teachers == 0 and AnswerReview.objects.count() == len(rows)
    AnswerReview.objects.all().delete()
    off = params.model_copy(update={"send_unsure_to_teachers": False})
    assert checks.check_answer_drift(district, model, new, off, dataset_version=version).unsure
    assert not AnswerReview.objects.exists()


def test_bad_answers_and_old_scorers_are_refused_saying_what_to_do(district, run_graph):
    steps = run(district, run_graph, answers(per_prompt=40, seed=8))
    model = ModelVersion.objects.get(pk=steps["scorer"].outputs["model"]["model_version"])
    assert set(model.training["reference"]) == {"length_counts", "vocabulary", "words", "oov_share"}
    params = checks.AnswerDriftParams()
    new = answers(per_prompt=40, seed=8)
    Alert.objects.all().delete()
    with pytest.raises(checks.CheckError, match="The new answers have no column 'text'"):
        checks.check_answer_drift(district, model, new.rename(columns={"text": "answer"}), params)
    with pytest.raises(checks.CheckError, match="has a word"):
        checks.check_answer_drift(district, model, new.assign(text="?!"), params)
    model.training = {k: v for k, v in model.training.items() if k != "reference"}
    model.save()
    with pytest.raises(checks.CheckError, match="train the scorer again"):
        checks.check_answer_drift(district, model, new, params)
    assert not Alert.objects.exists()


def test_a_mastery_model_is_refused_naming_the_monitor_to_use(district):
    mastery = ModelVersion.objects.create(
        district=district,
        name="maple-mastery",
        version="1",
        run_id="x",
        algorithm="bkt",
        task_type="mastery",
    )
    context = SimpleNamespace(run=SimpleNamespace(workflow=SimpleNamespace(district=district)))
    block = AnswerDriftMonitorBlock()
    with pytest.raises(BlockError) as refused:
        block.execute(
            context,
            {"model": {"model_version": mastery.pk}, "answers": {"version": 0}},
            block.Params(),
        )
    assert "Answer drift monitor" in str(refused.value)
    assert "Mastery monitor" in str(refused.value)


def test_the_kept_reference_judges_as_the_training_answers_themselves():
    from edumlops.ml import short_answer
    from edumlops.registry.scoring import reference

    train = answers(per_prompt=100, seed=1)["text"].tolist()
    new = answers(["fractions"], per_prompt=100, seed=2, filler=(15, 25))["text"].tolist()
    vocabulary = frozenset(w for t in train[:150] for w in short_answer.tokens(t))
    kept = reference(train, vocabulary)
    assert 0 < kept["oov_share"] < 0.5 and set(kept["vocabulary"]) <= vocabulary
    lengths = [int(n) for n, c in kept["length_counts"].items() for _ in range(c)]
    from_texts = short_answer.length_drift(train, new)
    from_kept = short_answer.length_drift([], new, reference_lengths=lengths)
    assert from_kept.statistic == pytest.approx(from_texts.statistic) and from_kept.drifted
    words = short_answer.vocabulary_drift(train, new, vocabulary=vocabulary)
    kept_words = short_answer.vocabulary_drift(
        [], new, vocabulary=kept["vocabulary"], reference_share=(kept["oov_share"], kept["words"])
    )
    assert kept_words.statistic == pytest.approx(words.statistic) and kept_words.drifted
