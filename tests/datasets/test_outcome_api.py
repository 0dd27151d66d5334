"""PATCH /api/dataset-versions/{id}/ with an `outcome` rule: the derived label, its counts per
group, the columns it excludes (and the override), every bad rule a 400 naming its field that
changes nothing, and an audit record for each change."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.datasets.models import DatasetVersion


def grades_csv(rows: int = 120, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    final = rng.integers(0, 21, rows).astype(float)
    final[:4] = np.nan
    frame = pd.DataFrame(
        {
            "school": rng.choice(["rhs", "phe"], rows),
            "sex": rng.choice(["F", "M"], rows),
            "Mjob": rng.choice(["teacher", "health", "other"], rows),
            "absences": rng.integers(0, 30, rows),
            "G2": np.clip(final + rng.normal(0, 0.5, rows), 0, 20).round(),
            "G3": final,
        }
    )
    return frame.to_csv(index=False).encode()


@pytest.fixture(autouse=True)
def _dataset_dir(settings, tmp_path):
    settings.DATASET_DIR = tmp_path / "datasets"


@pytest.fixture
def client(staff) -> APIClient:
    c = APIClient()
    c.force_authenticate(staff)
    return c


@pytest.fixture
def version_id(client, district) -> int:
    body = io.BytesIO(grades_csv())
    body.name = "grades.csv"
    response = client.post(
        "/api/datasets/", {"file": body, "name": "Grades", "sensitive": "sex"}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def patch(client, pk, body):
    return client.patch(f"/api/dataset-versions/{pk}/", body, format="json")


def frame() -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(grades_csv()))


def test_a_numeric_rule_becomes_the_label_with_its_counts_per_group(client, version_id):
    response = patch(
        client, version_id, {"outcome": {"name": "at_risk", "column": "G3", "op": "<", "value": 10}}
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["roles"]["label"] == "at_risk" and body["roles"]["positive"] == ["yes"]
    outcome = body["outcome"]
    assert outcome["rule"] == "G3 < 10" and outcome["label"] == "at_risk"
    assert outcome["positive"] == ["yes"]
    rows = frame().dropna(subset=["G3"])
    positive = rows["G3"] < 10
    assert outcome["counts"]["rows"] == len(rows)
    assert outcome["counts"]["missing"] == 4
    assert outcome["counts"]["positive"] == int(positive.sum())
    groups = {g["group"]: g for g in outcome["counts"]["by_group"]["sex"]}
    for sex in ("F", "M"):
        assert groups[sex]["rows"] == int((rows["sex"] == sex).sum())
        assert groups[sex]["positive"] == int((positive & (rows["sex"] == sex)).sum())
    # the same answer on GET
    assert client.get(f"/api/dataset-versions/{version_id}/").json()["outcome"] == outcome


def test_between_and_in_rules(client, version_id):
    body = patch(
        client,
        version_id,
        {"outcome": {"name": "middle", "column": "G3", "op": "between", "value": [8, 12]}},
    ).json()
    rows = frame().dropna(subset=["G3"])
    assert body["outcome"]["counts"]["positive"] == int(rows["G3"].between(8, 12).sum())
    body = patch(
        client,
        version_id,
        {"outcome": {"name": "care", "column": "Mjob", "op": "in", "value": ["health", "teacher"]}},
    ).json()
    assert body["outcome"]["rule"] == "Mjob is health or teacher"
    assert body["outcome"]["counts"]["positive"] == int(
        frame()["Mjob"].isin(["health", "teacher"]).sum()
    )
    assert body["roles"]["label"] == "care"


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"column": "G9"}, "outcome.column", "no column 'G9'"),
        ({"name": "G2"}, "outcome.name", "already has a column 'G2'"),
        ({"op": "~"}, "outcome.op", ""),
        ({"column": "Mjob"}, "outcome.op", "categorical"),
        ({"value": "ten"}, "outcome.value", "must be a number"),
        ({"op": "between", "value": [12, 8]}, "outcome.value", "swap them"),
        ({"op": "in", "value": ["x"]}, "outcome.op", "for categories"),
        ({"value": 50}, "outcome.value", "one class only"),
        ({"keep_leaky": ["nope"]}, "outcome.keep_leaky", "not a column"),
        ({"keep_leaky": ["absences"]}, "outcome.keep_leaky", "stays a feature anyway"),
    ],
)
def test_a_bad_rule_is_a_400_naming_the_field_and_changes_nothing(
    client, version_id, rule, field, words
):
    before = DatasetVersion.objects.get(pk=version_id).roles
    body = {"name": "at_risk", "column": "G3", "op": "<", "value": 10, **rule}
    response = patch(client, version_id, {"outcome": body, "school": "school"})
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == "invalid"
    assert [e["field"] for e in answer["errors"]] == [field]
    assert words in answer["errors"][0]["message"]
    assert DatasetVersion.objects.get(pk=version_id).roles == before
    assert not AuditRecord.objects.filter(action="dataset_roles").exists()


def test_the_source_and_a_leaking_column_are_excluded_and_the_leak_can_be_kept(client, version_id):
    rule = {"name": "at_risk", "column": "G3", "op": "<", "value": 10}
    outcome = patch(client, version_id, {"outcome": rule}).json()["outcome"]
    assert [e["column"] for e in outcome["excluded"]] == ["G3", "G2"]
    assert "almost perfectly" in outcome["excluded"][1]["why"]
    assert [(leak["column"], leak["kept"]) for leak in outcome["leaks"]] == [("G2", False)]
    kept = patch(client, version_id, {"outcome": {**rule, "keep_leaky": ["G2"]}}).json()
    assert [e["column"] for e in kept["outcome"]["excluded"]] == ["G3"]
    assert kept["outcome"]["leaks"][0]["kept"] is True
    assert DatasetVersion.objects.get(pk=version_id).role_set.not_features == ["at_risk", "G3"]


def test_each_change_is_audited_with_the_rule(client, version_id, staff):
    rule = {"name": "at_risk", "column": "G3", "op": "<=", "value": 9.5}
    patch(client, version_id, {"outcome": rule})
    patch(client, version_id, {"outcome": None})
    records = list(AuditRecord.objects.filter(action="dataset_roles").order_by("id"))
    assert len(records) == 2
    assert records[0].actor == staff
    assert records[0].after["outcome"]["rule"] == "G3 ≤ 9.5"
    assert records[0].after["outcome"]["excluded"] == ["G3", "G2"]
    assert records[1].before["outcome"]["name"] == "at_risk"
    assert records[1].after["outcome"] is None


def test_removing_the_rule_clears_the_label_it_made(client, version_id):
    patch(
        client, version_id, {"outcome": {"name": "at_risk", "column": "G3", "op": "<", "value": 10}}
    )
    body = patch(client, version_id, {"outcome": None}).json()
    assert body["outcome"] is None
    assert body["roles"]["label"] is None and body["roles"]["positive"] == []


def test_changing_the_sensitive_attributes_recounts_the_groups(client, version_id):
    patch(
        client, version_id, {"outcome": {"name": "at_risk", "column": "G3", "op": "<", "value": 10}}
    )
    body = patch(client, version_id, {"sensitive": ["sex", "Mjob"]}).json()
    assert set(body["outcome"]["counts"]["by_group"]) == {"sex", "Mjob"}


def test_a_teacher_may_not_define_the_outcome(version_id, teacher_a):
    teacher = APIClient()
    teacher.force_authenticate(teacher_a)
    response = patch(
        teacher, version_id, {"outcome": {"name": "r", "column": "G3", "op": "<", "value": 10}}
    )
    assert response.status_code in (403, 404)
    assert DatasetVersion.objects.get(pk=version_id).role_set.outcome is None
