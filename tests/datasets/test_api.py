"""POST /api/datasets/ and friends: uploads become immutable versions; bad files get a 400 that
names the problem, and leave nothing behind (no rows, no files)."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

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
    "only blank lines": (b",,\n , ,\n", "blank"),
    "too few rows": (b"a,b,label\n" + b"1,2,yes\n1,3,no\n" * 3, "rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_bad_file_gets_a_400_naming_the_problem_and_stores_nothing(
    client, district, settings, case
):
    data, words = BAD_FILES[case]
    response = upload(client, data)
    assert response.status_code == 400
    body = response.json()
    assert words in body["detail"].lower()
    assert body["code"] == "invalid"
    [entry] = body["errors"]
    assert entry["field"] == "file" and re.match(r"line \d+: ", entry["message"])
    assert nothing_stored(settings)


def test_a_label_with_one_class_gets_a_400_and_stores_nothing(client, district, settings):
    data = b"x,at_risk\n" + b"".join(f"{i},no\n".encode() for i in range(40))
    response = upload(client, data, label="at_risk", positive="yes")
    assert response.status_code == 400
    assert "one" in response.json()["detail"].lower()
    assert nothing_stored(settings)


def test_a_file_over_the_size_limit_gets_a_413_and_stores_nothing(client, district, settings):
    settings.DATASET_MAX_MB = 1
    data = csv_bytes(rows=40_000)
    assert len(data) > 2**20
    response = upload(client, data)
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "too_large" and "limit" in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["file"]
    assert nothing_stored(settings)


def test_a_teacher_may_not_upload(district, teacher_a, settings):
    c = APIClient()
    c.force_authenticate(teacher_a)
    response = upload(c, csv_bytes(), district=district.pk)
    assert response.status_code == 403
    assert nothing_stored(settings)


def test_another_districts_staff_do_not_see_the_dataset(client, district, outsider):
    upload(client, csv_bytes())
    other = APIClient()
    other.force_authenticate(outsider)
    assert other.get("/api/datasets/").json() == []


def file_error(response, status: int = 400) -> str:
    """The message of the one `errors` entry about the file, after checking the error shape."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    [entry] = body["errors"]
    assert entry["field"] == "file"
    return entry["message"]


# --- gzip ----------------------------------------------------------------------------------------
def test_a_gzip_csv_is_unpacked_and_is_the_same_version_as_the_plain_file(client, district):
    data = csv_bytes()
    packed = upload(client, gzip.compress(data))
    assert packed.status_code == 201, packed.json()
    body = packed.json()
    import hashlib

    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["rows"] == 60
    version = DatasetVersion.objects.get(pk=body["id"])
    assert version.csv_path.read_bytes() == data  # the CSV is kept unpacked
    again = upload(client, data)
    assert again.status_code == 200 and again.json()["id"] == body["id"]


def test_a_gzip_bomb_is_a_413_and_stores_nothing(client, district, settings):
    settings.DATASET_MAX_MB = 1
    bomb = gzip.compress(b"a,b\n" + b"1,2\n" * (4 * 2**20))  # 16 MB of CSV in ~16 KB
    assert len(bomb) < 100_000
    message = file_error(upload(client, bomb), 413)
    assert "unpacks to more than" in message
    assert nothing_stored(settings)


@pytest.mark.parametrize(
    "data, words",
    [
        (gzip.compress(b"a,b\n" + b"1,2\n" * 40)[:-12], "cut short"),
        (b"\x1f\x8b" + b"not gzip at all" * 4, "not a valid one"),
    ],
    ids=["truncated", "garbage"],
)
def test_a_broken_gzip_file_is_a_400_and_stores_nothing(client, district, settings, data, words):
    assert words in file_error(upload(client, data))
    assert nothing_stored(settings)


# --- encodings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read(client, district, codec):
    data = csv_bytes(encoding="utf-8").decode("utf-8")
    raw = data.encode(codec) if codec == "utf-16" else b"\xfe\xff" + data.encode(codec)
    response = upload(client, raw)
    assert response.status_code == 201, response.json()
    assert response.json()["encoding"] == "utf-16"
    frame = DatasetVersion.objects.get(pk=response.json()["id"]).frame()
    assert list(frame.columns)[0] == "student_id"
    assert "Español" in set(frame["home_language"])


def test_a_utf8_bom_followed_by_invalid_utf8_is_a_400_naming_byte_and_line(
    client, district, settings
):
    data = b"\xef\xbb\xbf" + csv_bytes(rows=30)
    broken = data.replace(b"\n", b"\n\xff\xfe", 1)  # bad bytes at the start of line 2
    message = file_error(upload(client, broken))
    offset = data.index(b"\n") + 1
    assert message.startswith(f"line 2: byte {offset} is not valid UTF-8")
    assert "CSV UTF-8" in message
    assert nothing_stored(settings)


def test_bytes_in_no_accepted_encoding_are_a_400_naming_byte_and_line(client, district, settings):
    # 0x81 is undefined in Windows-1252 and invalid as UTF-8: no encoding we read fits
    data = b"a,b,label\n" + b"1,2,yes\n" * 5 + b"1,\x81,no\n" + b"1,2,no\n" * 30
    message = file_error(upload(client, data))
    offset = data.index(b"\x81")
    assert message.startswith(f"line 7: byte {offset} is not valid UTF-8")
    assert "save it as a CSV file in UTF-8" in message
    assert nothing_stored(settings)


def test_a_binary_file_with_nul_bytes_is_a_400(client, district, settings):
    data = b"a,b\n1,2\n3,\x00\x00\n" + b"1,2\n" * 30
    message = file_error(upload(client, data))
    assert message.startswith("line 3: the file holds a NUL character")
    assert nothing_stored(settings)


def test_utf16_with_a_broken_surrogate_is_a_400(client, district, settings):
    raw = "a,b\n1,2\n".encode("utf-16") + b"\x00\xd8" + "x,y\n".encode("utf-16-le") * 30
    message = file_error(upload(client, raw))
    assert message.startswith("line 3: byte 18 is not valid UTF-16")
    assert nothing_stored(settings)


# --- CSV structure -------------------------------------------------------------------------------
def test_an_unclosed_quote_before_a_200kb_field_is_a_400_with_its_line(client, district, settings):
    data = b"a,b,label\n" + b"1,2,yes\n1,2,no\n" * 10 + b'3,"' + b"x" * 200_000 + b",yes\n"
    data += b"1,2,no\n" * 10
    message = file_error(upload(client, data))
    assert message.startswith("line 22: ")
    assert "quote" in message
    assert nothing_stored(settings)


def test_an_unclosed_quote_is_a_400_naming_where_it_opens(client, district, settings):
    data = b"a,b,label\n" + b"1,2,yes\n1,2,no\n" * 15 + b'3,"oops,yes\n' + b"1,2,no\n" * 5
    message = file_error(upload(client, data))
    assert message.startswith('line 32: a quote (") opens a value here and is never closed')
    assert nothing_stored(settings)


def test_the_form_page_shares_the_checks(district, staff, settings):
    from django.test import Client

    page = Client()
    page.force_login(staff)
    upload_file = io.BytesIO(b"\xef\xbb\xbf" + b"a,b\n\xff\n")
    upload_file.name = "bad.csv"
    response = page.post("/datasets/", {"file": upload_file, "name": "Bad"})
    assert response.status_code == 400
    assert "line 2: byte" in response.content.decode()
    assert nothing_stored(settings)


OULAD = Path("/work/shared/data/oulad/courses.csv")


@pytest.mark.skipif(not OULAD.exists(), reason="the OULAD copy is not on this machine")
def test_a_real_csv_uploads_plain_and_gzipped(client, district, settings):
    settings.DATASET_MIN_ROWS = 20
    data = OULAD.read_bytes()
    plain = upload(client, data, name="OULAD courses")
    assert plain.status_code == 201, plain.json()
    assert plain.json()["rows"] == 22
    packed = upload(client, gzip.compress(data), name="OULAD courses")
    assert (packed.status_code, packed.json()["id"]) == (200, plain.json()["id"])


# --- request values ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", "0", "1.5", str(2**64)])
def test_a_bad_district_is_a_400_naming_it(client, district, settings, value):
    """Was a 500 (`district=abc` went raw into a lookup)."""
    response = upload(client, csv_bytes(), district=value)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert [e["field"] for e in body["errors"]] == ["district"]
    assert nothing_stored(settings)


def test_a_district_you_do_not_see_is_a_400_like_an_unknown_one(
    client, district, settings, other_district
):
    unknown = upload(client, csv_bytes(), district=999_999)
    hidden = upload(client, csv_bytes(), district=other_district.pk)
    assert unknown.status_code == hidden.status_code == 400
    assert [e["field"] for e in hidden.json()["errors"]] == ["district"]
    assert nothing_stored(settings)


def test_no_file_is_a_400_naming_file(client, district, settings):
    response = client.post("/api/datasets/", {"name": "x"}, format="multipart")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["file"]


def test_a_bad_role_is_a_400_naming_the_role(client, district, settings):
    response = upload(client, csv_bytes(), label="nope")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["label"]
    assert nothing_stored(settings)


def test_the_list_is_documented_as_a_list_of_datasets(client, district):
    upload(client, csv_bytes())
    listed = client.get("/api/datasets/").json()
    assert [d["name"] for d in listed] == ["Attendance"]
    assert listed[0]["versions"][0]["number"] == 1
    schema = client.get("/api/schema/?format=json").json()
    answer = schema["paths"]["/api/datasets/"]["get"]["responses"]["200"]["content"]
    body = answer["application/json"]["schema"]
    assert body["type"] == "array" and body["items"]["$ref"].endswith("/DatasetOut")


# --- not yours, not there ----------------------------------------------------------------------
def test_another_districts_version_is_a_404_like_an_unknown_id(
    client, district, make_user, other_school, outsider
):
    body = upload(client, csv_bytes()).json()
    far_teacher = make_user("far_teacher", "teacher", school=other_school)
    for user in (far_teacher, outsider):
        other = APIClient()
        other.force_authenticate(user)
        for path in (
            f"/api/dataset-versions/{body['id']}/",
            f"/api/datasets/{body['dataset_id']}/",
        ):
            hidden = other.get(path)
            unknown = other.get(path.rsplit("/", 2)[0] + "/999999/")
            assert hidden.status_code == unknown.status_code == 404
            assert hidden.json() == unknown.json()
        patched = other.patch(f"/api/dataset-versions/{body['id']}/", {"label": "x"}, format="json")
        assert patched.status_code == 404


# --- throttle ------------------------------------------------------------------------------------
def test_uploads_past_the_rate_get_429_with_retry_after(client, district, settings):
    from django.core.cache import cache

    cache.clear()
    settings.EDUMLOPS_THROTTLE_RATES = {**settings.EDUMLOPS_THROTTLE_RATES, "uploads": "2/hour"}
    assert upload(client, csv_bytes(seed=1)).status_code == 201
    assert upload(client, csv_bytes(seed=2)).status_code == 201
    for _ in range(3):  # listing is not counted
        assert client.get("/api/datasets/").status_code == 200
    refused = upload(client, csv_bytes(seed=3))
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert refused.json()["code"] == "throttled" and refused.json()["errors"] == []
    assert DatasetVersion.objects.count() == 2
