"""The demo's scored short answers: 4,000 answers to four questions, one teacher's score each and
a second teacher's on about three in ten, a home-language group marked sensitive, stored once."""

from __future__ import annotations

from edumlops.datasets.demo import SHORT_ANSWERS_NAME, seed_short_answers, short_answers
from edumlops.datasets.models import Dataset


def test_the_answers_have_text_two_raters_and_a_group_but_no_true_score():
    frame = short_answers()
    assert len(frame) == 4000 and frame["prompt_id"].nunique() == 4
    assert "true_score" not in frame.columns
    assert set(frame["score_1"]) == {0, 1, 2, 3}
    double = frame["score_2"].notna().mean()
    assert 0.25 < double < 0.35
    assert set(frame["group"]) == {"english", "other_language"}
    assert frame["text"].str.len().min() > 0
    assert short_answers().equals(frame)


def test_seeding_stores_it_once_with_the_group_marked_sensitive_and_no_label(ml_stores, district):
    version, created = seed_short_answers(district)
    assert created and version.rows == 4000
    assert version.dataset.name == SHORT_ANSWERS_NAME
    assert version.dataset.source == Dataset.Source.GENERATED
    roles = version.role_set
    assert (roles.label, roles.sensitive) == (None, ["group"])
    kinds = {c["name"]: c["kind"] for c in version.schema}
    assert kinds["text"] == "text" and kinds["score_1"] == "numeric"
    again, created_again = seed_short_answers(district)
    assert again == version and not created_again
