"""POST /api/datasets/ and friends: uploads become immutable versions; bad files get a 400 that
names the problem, and leave nothing behind (no rows, no files)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from edumlops.datasets.models import Dataset, DatasetVersion


def csv_bytes(rows: int = 60, seed: int = 0, sep: str = ",", encoding: str = "utf-8") -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "student_id": [f"S{i:05d}" for i in range(rows)],
            "school": rng.choice(["rhs", "phe", "lms"], rows),
            "attendance_rate": rng.uniform(0.5, 1.0, rows).round(3),
            "home_language": rng.choice(["English", "Español", "Français"], rows),
            "at_risk": rng.choice(["yes", "no"], rows, p=[0.3, 0.7]),
        }
    )
    return frame.to_csv(index=False, sep=sep).encode(encoding)


@pytest.fixture
def client(staff) -> APIClient:
    c = APIClient()
    c.force_authenticate(staff)
    return c


def upload(client: APIClient, data: bytes, name: str = "Attendance", **fields: object):
    body = {"file": io.BytesIO(data), "name": name, **fields}
    body["file"].name = "attendance.csv"
    return client.post("/api/datasets/", body, format="multipart")


def nothing_stored(settings) -> bool:
    folder = settings.DATASET_DIR
    files = list(folder.glob("*")) if folder.exists() else []
    return not Dataset.objects.exists() and not DatasetVersion.objects.exists() and not files


@pytest.fixture(autouse=True)
def _dataset_dir(settings, tmp_path):
    settings.DATASET_DIR = tmp_path / "datasets"


def test_an_upload_answers_201_with_the_version_its_sha256_and_schema(client, district):
    data = csv_bytes()
    response = upload(client, data)
    assert response.status_code == 201, response.json()
    body = response.json()
    import hashlib

    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["rows"] == 60 and body["created"] is True
    kinds = {c["name"]: c["kind"] for c in body["schema"]}
    assert kinds == {
        "student_id": "identifier",
        "school": "categorical",
        "attendance_rate": "numeric",
        "home_language": "categorical",
        "at_risk": "boolean",
    }
    version = DatasetVersion.objects.get(pk=body["id"])
    assert version.csv_path.read_bytes() == data
    assert len(version.frame()) == 60


def test_the_same_bytes_again_find_the_existing_version(client, district):
    first = upload(client, csv_bytes()).json()
    again = upload(client, csv_bytes(), name="Another name")
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["created"] is False
    assert DatasetVersion.objects.count() == 1


def test_new_content_under_the_same_name_is_version_2(client, district):
    upload(client, csv_bytes(seed=0))
    second = upload(client, csv_bytes(seed=1)).json()
    assert second["number"] == 2 and second["dataset"] == "Attendance"


def test_semicolons_and_latin1_are_sniffed(client, district):
    body = upload(client, csv_bytes(sep=";", encoding="latin-1")).json()
    assert body["delimiter"] == ";" and body["encoding"] in ("cp1252", "latin-1")
    version = DatasetVersion.objects.get(pk=body["id"])
    assert "Español" in set(version.frame()["home_language"])


def test_a_utf8_bom_is_not_part_of_the_first_column(client, district):
    body = upload(client, b"\xef\xbb\xbf" + csv_bytes()).json()
    assert body["encoding"] == "utf-8-sig"
    assert body["schema"][0]["name"] == "student_id"


def test_roles_sent_with_the_upload_are_checked_and_kept(client, district):
    body = upload(
        client, csv_bytes(), label="at_risk", positive="yes", sensitive="home_language"
    ).json()
    assert body["roles"]["label"] == "at_risk"
    assert body["roles"]["positive"] == ["yes"]
    assert body["roles"]["sensitive"] == ["home_language"]


def test_roles_can_be_marked_afterwards(client, district):
    body = upload(client, csv_bytes()).json()
    response = client.patch(
        f"/api/dataset-versions/{body['id']}/",
        {
            "label": "at_risk",
            "positive": ["yes"],
            "sensitive": ["home_language"],
            "school": "school",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert DatasetVersion.objects.get(pk=body["id"]).roles["school"] == "school"


def test_marking_an_unknown_column_is_refused_with_the_columns_named(client, district):
    body = upload(client, csv_bytes()).json()
    response = client.patch(
        f"/api/dataset-versions/{body['id']}/", {"label": "outcome"}, format="json"
    )
    assert response.status_code == 400
    assert "outcome" in response.json()["detail"]


BAD_FILES = {
    "empty": (b"", "empty"),
    "no header": (b"1,2,3\n4,5,6\n" * 30, "header"),
    "duplicate columns": (b"a,b,a\n" + b"1,2,3\n" * 30, "duplicate"),
    "ragged row": (b"a,b,c\n" + b"1,2,3\n" * 10 + b"1,2\n" + b"1,2,3\n" * 20, "line 12"),
    "too few rows": (b"a,b,label\n" + b"1,2,yes\n1,3,no\n" * 3, "rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_bad_file_gets_a_400_naming_the_problem_and_stores_nothing(
    client, district, settings, case
):
    data, words = BAD_FILES[case]
    response = upload(client, data)
    assert response.status_code == 400
    assert words in response.json()["detail"].lower()
    assert nothing_stored(settings)


def test_a_label_with_one_class_gets_a_400_and_stores_nothing(client, district, settings):
    data = b"x,at_risk\n" + b"".join(f"{i},no\n".encode() for i in range(40))
    response = upload(client, data, label="at_risk", positive="yes")
    assert response.status_code == 400
    assert "one" in response.json()["detail"].lower()
    assert nothing_stored(settings)


def test_a_file_over_the_size_limit_gets_a_400_and_stores_nothing(client, district, settings):
    settings.DATASET_MAX_MB = 1
    data = csv_bytes(rows=40_000)
    assert len(data) > 2**20
    response = upload(client, data)
    assert response.status_code == 400
    assert "limit" in response.json()["detail"]
    assert nothing_stored(settings)


def test_a_teacher_may_not_upload(district, teacher_a, settings):
    c = APIClient()
    c.force_authenticate(teacher_a)
    response = upload(c, csv_bytes(), district=district.pk)
    assert response.status_code == 403
    assert nothing_stored(settings)


def test_another_districts_staff_do_not_see_the_dataset(client, district, outsider):
    body = upload(client, csv_bytes()).json()
    other = APIClient()
    other.force_authenticate(outsider)
    assert other.get(f"/api/dataset-versions/{body['id']}/").status_code == 403
    assert other.get("/api/datasets/").json() == []
