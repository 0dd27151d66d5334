"""The audit page shows before → after as fields a person reads, not Python dicts."""

from __future__ import annotations

import pytest
from django.test import Client

from edumlops.audit.models import record
from edumlops.audit.views import Change, changes


def test_only_the_fields_that_changed_are_listed_as_old_to_new():
    before = {"psi": 0.2, "school": "A", "groups": {"sex": ["F", "M"]}}
    after = {"psi": 0.15, "school": "A", "groups": {"sex": ["F", "M", "X"]}, "by": "dana"}
    assert changes(before, after) == [
        Change("psi", "0.2", "0.15"),
        Change("groups.sex", "F, M", "F, M, X"),
        Change("by", "—", "dana"),
    ]


def test_a_record_with_only_one_side_or_none_reads_plainly():
    assert changes({}, {"alias": "champion"}) == [Change("alias", "—", "champion")]
    assert changes({"active": True}, {"active": False}) == [Change("active", "yes", "no")]
    assert changes({}, {}) == []
    assert changes(None, "revoked") == [Change("value", "—", "revoked")]


@pytest.mark.django_db
def test_the_page_shows_field_old_and_new(staff, district):
    record(
        action="threshold_change",
        actor=staff,
        district=district,
        target_type="threshold",
        target_id="psi",
        before={"psi": 0.2},
        after={"psi": 0.15},
    )
    client = Client()
    client.force_login(staff)
    text = client.get("/audit/").content.decode()
    assert '<span class="field">psi</span>: <span class="old">0.2</span>' in text
    assert "{&#x27;psi&#x27;" not in text and "{'psi'" not in text
