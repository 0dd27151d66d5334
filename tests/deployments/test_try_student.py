""" "Try a student" on the school page: one made-up row scored by the school's model through the
predict API's own checks (real ONNX Runtime), with its band, reasons and warnings, recorded
nowhere; only people who see the school may use it."""

from __future__ import annotations

import pytest
from django.test import Client

from edumlops.deployments import services
from edumlops.deployments.models import Prediction
from tests.deployments.conftest import rows_for

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(school) -> str:
    return f"/schools/{school.pk}/try/"


def shown(x: float) -> str:
    """A number as the page shows it (floatformat:"-2")."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


def form_of(row: dict) -> dict:
    return {k: "" if v is None else str(v) for k, v in row.items()}


@pytest.fixture
def deployed(two_models, staff):
    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    return v1


def test_the_form_has_a_field_per_feature_and_says_nothing_is_recorded(
    deployed, school_a, teacher_a
):
    response = client_for(teacher_a).get(url(school_a), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # htmx gets the card alone
    for feature in deployed.feature_spec().columns:
        assert f'name="{feature}"' in html
    assert '<option value="suburban">' in html  # the categories seen in training
    assert "Nothing is recorded" in html
    assert "seen in training:" in html


def test_a_student_is_scored_with_band_and_reasons_and_not_recorded(deployed, school_a, teacher_a):
    row = rows_for(1)[0]
    response = client_for(teacher_a).post(
        url(school_a), form_of(row), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    expected = deployed.predict_proba(__import__("pandas").DataFrame([row]))[0]
    assert f"{100 * expected:.1f} %" in html
    band = "High risk" if expected >= 0.5 else ("Medium risk" if expected >= 0.25 else "Low risk")
    assert band in html
    assert 'data-testid="try-reasons"' in html and ("raises risk" in html or "lowers risk" in html)
    assert 'data-testid="try-warnings"' not in html
    assert not Prediction.objects.exists()


def test_an_unseen_category_is_scored_and_flagged(deployed, school_a, staff):
    row = {**rows_for(1)[0], "locality": "lunar"}
    html = client_for(staff).post(url(school_a), form_of(row)).content.decode()
    assert 'data-testid="try-band"' in html
    assert 'data-testid="try-warnings"' in html and "&#x27;lunar&#x27;" in html
    assert "<html" in html  # without htmx: the page on its own
    assert not Prediction.objects.exists()


def test_a_bad_number_is_named_like_the_api_names_it(deployed, school_a, staff):
    row = {**form_of(rows_for(1)[0]), "attendance_rate": "most days"}
    html = client_for(staff).post(url(school_a), row).content.decode()
    assert 'data-testid="try-error-attendance_rate"' in html
    assert "must be a number, got &#x27;most days&#x27;: send a finite number, or leave it" in html
    assert "could not be scored: fix the 1 field(s) marked above" in html
    assert 'data-testid="try-result"' not in html


def test_only_people_who_see_the_school_may_try(deployed, school_a, teacher_b):
    response = client_for(teacher_b).post(url(school_a), form_of(rows_for(1)[0]))
    assert response.status_code == 404
    assert Client().get(url(school_a)).status_code == 302  # to the login page


def test_the_school_page_offers_it_and_counts_unseen_categories(deployed, school_a, teacher_a):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(teacher_a)
    rows = rows_for(2)
    rows[0]["locality"] = "lunar"
    assert (
        api.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows}, format="json").status_code
        == 200
    )
    html = client_for(teacher_a).get(f"/schools/{school_a.pk}/").content.decode()
    assert f'hx-get="{url(school_a)}"' in html
    assert "1 prediction with an unseen locality" in html


def test_no_model_no_form(school_a, teacher_a):
    html = client_for(teacher_a).get(url(school_a)).content.decode()
    assert "No model is deployed" in html
    assert (
        'data-testid="try-student"'
        not in client_for(teacher_a).get(f"/schools/{school_a.pk}/").content.decode()
    )


def test_numbers_show_the_range_of_the_training_data(deployed, school_a, staff):
    from edumlops.datasets.models import ingest
    from edumlops.ml.synth import generate_district

    client = client_for(staff)
    html = client.get(url(school_a)).content.decode()
    edges = deployed.drift_reference["attendance_rate"]["edges"]  # no profile: the deciles
    assert f"8 in 10 training students: {shown(edges[0])} to {shown(edges[-1])}" in html

    frame = generate_district(1500, seed=0)  # the rows make_model trained on
    version, _ = ingest(
        district=deployed.district, name="rows", data=frame.to_csv(index=False).encode()
    )
    deployed.dataset_version = version
    deployed.save()
    html = client.get(url(school_a)).content.decode()
    low, high = frame["quiz_average"].min(), frame["quiz_average"].max()
    assert f"seen in training: {shown(low)} to {shown(high)}" in html
    mean = round(float(frame["quiz_average"].mean()), 2)
    assert f'name="quiz_average" value="{mean:g}"' in html  # a typical value to start from
