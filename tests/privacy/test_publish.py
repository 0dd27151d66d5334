"""Private aggregates: a table is noised once per key and reused, its ε is in the ledger, and
with no budget left small cells are suppressed (or the last published table is shown)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from django.test import Client

from edumlops.audit.models import AuditRecord
from edumlops.datasets.models import Dataset
from edumlops.deployments.models import Deployment
from edumlops.ml.fairness import BiasRule
from edumlops.ml.fairness import bias_report as measure_bias
from edumlops.monitoring.models import PerformanceCheck
from edumlops.privacy import ledger, publish
from edumlops.privacy.models import PrivacyRelease
from edumlops.registry.models import ModelVersion

pytestmark = pytest.mark.django_db

TABLE = {
    "all students": {"positives": 60, "found": 45},
    "ses=low": {"positives": 4, "found": 3},
    "ses=high": {"positives": 56, "found": 42},
}


def _publish(district, actor, table=TABLE, key="t:1", dataset=None):
    return publish.publish(
        district=district,
        dataset=dataset,
        key=key,
        what="recall by group",
        table=table,
        sensitivity=4,
        actor=actor,
    )


def _budget(district, staff, total, dataset=None, max_per_release=2.0):
    ledger.set_budget(
        district=district,
        dataset=dataset,
        total_epsilon=total,
        max_per_release=max_per_release,
        min_cell=10,
        actor=staff,
    )


def test_a_table_is_noised_once_and_every_later_view_reuses_it(district, staff, teacher_a):
    first = _publish(district, teacher_a)
    again = _publish(district, staff)
    assert first.state == "noised" and again.state == "reused"
    assert PrivacyRelease.objects.count() == 1
    assert first.cells == again.cells  # the same noisy numbers for everyone
    assert all(c.state == "noised" for row in first.cells.values() for c in row.values())
    assert ledger.spent(district, None) == pytest.approx(publish.AGGREGATE_EPSILON)
    rate = again.rate("ses=low", "found", "positives")
    assert rate.state == "noised" and (rate.value is None or 0.0 <= rate.value <= 1.0)
    assert rate.text.startswith("≈") or rate.value is None


def test_the_release_is_in_the_ledger_and_the_audit_chain_without_the_exact_counts(
    district, teacher_a
):
    shown = _publish(district, teacher_a)
    release = PrivacyRelease.objects.get()
    assert release.kind == "aggregate" and release.key == "t:1"
    assert release.epsilon == publish.AGGREGATE_EPSILON and release.actor == teacher_a
    assert "geometric" in release.mechanism and "sensitivity 4" in release.mechanism
    assert release.details["cells"] == {
        r: {c: cell.value for c, cell in cols.items()} for r, cols in shown.cells.items()
    }
    # the counts are told apart by an HMAC under the site's secret, not a plain hash of them
    import hashlib
    import json

    plain = hashlib.sha256(json.dumps(TABLE, sort_keys=True).encode()).hexdigest()
    assert len(release.details["source"]) == 64 and release.details["source"] != plain
    entry = AuditRecord.objects.get(pk=release.audit_record_id)
    assert entry.action == "privacy_release" and entry.after["kind"] == "aggregate"


def test_the_noise_is_real(district, teacher_a):
    table = {f"g{i}": {"count": 5} for i in range(20)}
    shown = _publish(district, teacher_a, table=table)
    values = [shown.cell(r, "count").value for r in table]
    assert any(v != 5 for v in values)  # all 20 unchanged: probability below 1e-12
    assert all(v >= 0 for v in values)


def test_with_no_budget_small_cells_are_suppressed_and_nothing_is_spent(district, staff, teacher_a):
    _budget(district, staff, 0.0)
    shown = _publish(district, teacher_a)
    assert shown.state == "suppressed" and "Not enough privacy budget" in shown.refusal
    assert shown.cell("ses=low", "positives").state == "suppressed"
    assert shown.cell("ses=low", "positives").text == "fewer than 10"
    assert shown.cell("ses=high", "positives").value == 56  # large cells as they are
    assert shown.rate("ses=low", "found", "positives").value is None
    assert shown.rate("ses=high", "found", "positives").value == pytest.approx(0.75)
    assert PrivacyRelease.objects.count() == 0


def test_new_counts_over_budget_fall_back_to_the_last_published_table(district, staff, teacher_a):
    _budget(district, staff, 0.6)
    first = _publish(district, teacher_a)
    changed = {**TABLE, "ses=low": {"positives": 5, "found": 3}, "ses=mid": {"positives": 3,
               "found": 1}}  # fmt: skip
    later = _publish(district, teacher_a, table=changed)
    assert later.state == "stale"
    assert "0.1 of 0.6 left" in later.refusal
    assert later.cell("ses=low", "positives") == first.cell("ses=low", "positives")
    assert later.cell("ses=mid", "positives").state == "suppressed"  # not in the last table
    assert "Newer numbers are not published" in later.summary
    assert PrivacyRelease.objects.count() == 1


def test_new_counts_with_budget_left_are_released_again(district, teacher_a):
    _publish(district, teacher_a)
    changed = {**TABLE, "ses=low": {"positives": 6, "found": 3}}
    assert _publish(district, teacher_a, table=changed).state == "noised"
    assert PrivacyRelease.objects.count() == 2
    assert ledger.spent(district, None) == pytest.approx(2 * publish.AGGREGATE_EPSILON)


def test_a_release_is_capped_by_the_cohorts_maximum_per_release(district, staff, teacher_a):
    _budget(district, staff, 4.0, max_per_release=0.2)
    _publish(district, teacher_a)
    assert PrivacyRelease.objects.get().epsilon == pytest.approx(0.2)


# --- the pages ---------------------------------------------------------------------------------
def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def checked(district, school_a):
    model = ModelVersion.objects.create(
        district=district, name="ew", version="1", run_id="r1", algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )  # fmt: skip
    return PerformanceCheck.objects.create(
        school=school_a,
        checked_at="2026-10-01T10:00:00Z",
        model_version=model,
        rows=400,
        metrics={"recall": 0.75, "positives": 60, "found": 45},
        groups=[
            {"group": "ses=low", "recall": 0.75, "positives": 4, "found": 3},
            {"group": "ses=high", "recall": 0.75, "positives": 56, "found": 42},
        ],
    )


def _recall_states(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'data-group="([^"]+)" data-state="([^"]+)"', html))


def test_a_teacher_reads_recall_by_group_as_published_and_staff_as_measured(
    district, school_a, teacher_a, staff, checked
):
    page = _client(teacher_a).get(f"/schools/{school_a.pk}/").content.decode()
    assert _recall_states(page) == {
        "all students": "noised",
        "ses=low": "noised",
        "ses=high": "noised",
    }
    assert "noised, ε 0.5" in page and 'data-testid="recall-privacy"' in page
    _client(teacher_a).get(f"/schools/{school_a.pk}/")
    release = PrivacyRelease.objects.get()  # a second view spends nothing
    assert release.key == f"performance-check:{checked.pk}" and release.dataset is None
    assert release.details["sensitivity"] == 4  # two counts, "all students" and ses
    staff_page = _client(staff).get(f"/schools/{school_a.pk}/").content.decode()
    assert set(_recall_states(staff_page).values()) == {"exact"}
    assert PrivacyRelease.objects.count() == 1


def test_with_no_budget_a_teacher_sees_the_small_group_suppressed(
    district, school_a, teacher_a, staff, checked
):
    _budget(district, staff, 0.0)
    page = _client(teacher_a).get(f"/schools/{school_a.pk}/").content.decode()
    states = _recall_states(page)
    assert states["ses=low"] == "suppressed" and states["ses=high"] == "exact"
    assert "not shown: fewer than 10 students" in page
    assert PrivacyRelease.objects.count() == 0


@pytest.fixture
def card_model(district, school_a):
    """A served model whose bias report has a group of 6 students (2 at risk)."""
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.8, y, 1 - y)
    sex = np.array(["F"] * 200 + ["M"] * 194 + ["X"] * 6)
    y[-6:] = [1, 1, 0, 0, 0, 0]
    report = measure_bias(
        y, p, pd.DataFrame({"sex": sex}), [BiasRule("false_negative_rate")],
        min_group_size=30, intersections=False, n_boot=20,
    ).to_dict()  # fmt: skip
    dataset = Dataset.objects.create(district=district, name="Class of 2027")
    model = ModelVersion.objects.create(
        district=district, name="ew", version="1", run_id="r1", algorithm="logistic_regression",
        dataset_sha256="0" * 64, bias_report=report, bias_outcome=report["outcome"],
    )  # fmt: skip
    Deployment.objects.create(district=district, model_version=model, scope="district")
    return model, dataset, report


def test_the_teachers_model_card_shows_small_groups_noised_and_staff_the_exact_ones(
    district, school_a, teacher_a, staff, card_model
):
    model, _, report = card_model
    exact = "X: 2 at-risk students of 6 held-out students"
    assert exact in report["checks"][0]["reason"]
    page = _client(teacher_a).get(f"/schools/{school_a.pk}/model/").content.decode()
    assert 'data-group="X"' in page and 'data-privacy="noised"' in page
    assert exact not in page and "sex=X (n=6)" not in page  # nor in the limitations
    assert "sex=X (n=≈" in page
    assert 'data-testid="privacy-mark"' in page and "noised, ε 0.5" in page
    # the large groups stay exact and unmarked
    assert page.count('data-privacy="') == 1
    release = PrivacyRelease.objects.get()
    assert release.key == f"model-card:{model.pk}:groups" and release.kind == "aggregate"
    _client(teacher_a).get(f"/schools/{school_a.pk}/model/")
    assert PrivacyRelease.objects.count() == 1
    staff_page = _client(staff).get(f"/models/{model.pk}/").content.decode()
    assert "sex=X (n=6)" in staff_page and 'data-privacy="' not in staff_page


def test_the_bias_report_is_published_against_its_datasets_budget(
    district, staff, teacher_a, card_model
):
    model, dataset, report = card_model
    published = publish.bias_report(
        district=district, dataset=dataset, key="card", report=report, actor=teacher_a
    )
    small = next(g for g in published["groups"] if g["group"] == "X")
    assert small["privacy"]["state"] == "noised"
    assert ledger.spent(district, dataset) == pytest.approx(publish.AGGREGATE_EPSILON)
    assert ledger.spent(district, None) == 0.0
    _budget(district, staff, 0.0, dataset=dataset)
    suppressed = publish.bias_report(
        district=district, dataset=dataset, key="other", report=report, actor=teacher_a
    )
    small = next(g for g in suppressed["groups"] if g["group"] == "X")
    assert small["privacy"]["state"] == "suppressed" and small["n"] is None
    assert set(small["metrics"].values()) == {None}
    assert "X: fewer than 10 students (not shown)" in suppressed["checks"][0]["reason"]
    large = next(g for g in suppressed["groups"] if g["group"] == "F")
    assert "privacy" not in large and large["n"] == 200
