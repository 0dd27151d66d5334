"""The bias gate inside a training run (steps executed in this process, real MLflow store):
it fails on data generated with bias injected, passes on fair data, and is inconclusive — asking
district staff — when a group is too small."""

from __future__ import annotations

import pandas as pd
import pytest

from edumlops.datasets.models import ingest, store_generated
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import Bias, generate_district
from edumlops.registry.models import ModelVersion
from tests.registry.conftest import run_here, steps_of
from workflows import engine
from workflows.training import TrainingRequest, start_training

pytestmark = pytest.mark.django_db

# One attribute, a large held-out half: the gap's interval is narrow enough to decide.
ROLES = Roles(
    label="at_risk", positive=["yes"], sensitive=["english_learner"], school="school", time="term"
)


def train(version, staff, **overrides):
    request = TrainingRequest(
        dataset_version=version.pk,
        algorithm="logistic_regression",
        test_share=0.5,
        **{"max_difference": 0.15, "min_group_size": 30, **overrides},
    )
    return start_training(version, request, staff)


def generated(district, name, rows=10_000, bias=None):
    frame = generate_district(rows, seed=3, bias=bias)
    return ingest(
        district=district, name=name, data=frame.to_csv(index=False).encode(), roles=ROLES
    )[0]


def test_the_gate_fails_on_data_generated_with_bias_against_english_learners(
    ml_stores, district, staff
):
    version = generated(district, "biased", bias=Bias("english_learner", "yes", 1.0))
    run = train(version, staff)
    assert run_here(run) == "failed"
    steps = steps_of(run)
    assert steps["bias"].status == "failed"
    assert "bias check failed" in steps["bias"].reason
    assert steps["export"].status == "blocked"
    model = ModelVersion.objects.get(workflow_run=run)
    assert model.bias_outcome == "fail"
    worst = next(c for c in model.bias_report["checks"] if c["attribute"] == "english_learner")
    assert worst["outcome"] == "fail" and worst["ci_low"] > 0.15


def test_the_gate_passes_on_fair_data(ml_stores, district, staff):
    version = generated(district, "fair")
    run = train(version, staff)
    assert run_here(run) == "succeeded", steps_of(run)["bias"].reason
    model = ModelVersion.objects.get(workflow_run=run)
    assert model.bias_outcome == "pass"
    assert model.bias_report["checks"][0]["ci_high"] <= 0.15
    assert model.aliases == ["challenger"]


def test_a_tiny_group_makes_the_gate_inconclusive_and_staff_decide(
    ml_stores, district, staff, django_capture_on_commit_callbacks
):
    frame = generate_district(3000, seed=1)
    frame["tiny_group"] = ["rare"] * 12 + ["common"] * (len(frame) - 12)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["tiny_group"], school="school")
    version = ingest(
        district=district, name="tiny", data=frame.to_csv(index=False).encode(), roles=roles
    )[0]
    run = train(version, staff, if_inconclusive="ask_approval")
    assert run_here(run) == "waiting_approval"
    steps = steps_of(run)
    assert steps["bias"].status == "waiting_approval"
    assert "inconclusive" in steps["bias"].reason
    assert steps["export"].status == "queued"  # held behind the gate, not failed
    model = ModelVersion.objects.get(workflow_run=run)
    assert model.bias_outcome == "inconclusive"
    rare = next(g for g in model.bias_report["groups"] if g["group"] == "rare")
    assert rare["insufficient"] is True

    with django_capture_on_commit_callbacks(execute=False):
        engine.approve(run, staff, "Small group reviewed by hand; pilot only.")
    assert run_here(run) == "succeeded"
    card = ModelVersion.objects.get(pk=model.pk).card()
    assert card["approvals"][0]["comment"].startswith("Small group reviewed")


def test_inconclusive_can_be_set_to_stop_the_run(ml_stores, district, staff):
    frame = generate_district(2000, seed=2)
    frame["tiny_group"] = ["rare"] * 10 + ["common"] * (len(frame) - 10)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["tiny_group"])
    version = ingest(
        district=district, name="tiny2", data=frame.to_csv(index=False).encode(), roles=roles
    )[0]
    run = train(version, staff, if_inconclusive="block")
    assert run_here(run) == "failed"
    assert "inconclusive" in steps_of(run)["bias"].reason


def test_generated_demo_roles_mark_the_four_sensitive_attributes(ml_stores, district):
    version, created = store_generated(district, "demo", generate_district(500, seed=0))
    assert created
    assert version.role_set.sensitive == ["ses", "english_learner", "disability", "sex"]
    assert isinstance(version.frame(), pd.DataFrame)


def sex_and_address(rows=4000, seed=1):
    """Generated students with a second attribute, address (U/R), independent of sex: at the
    held-out half each sex and each address has about 250 at-risk students, each sex × address
    pair about 125, so a minimum of 180 judges single attributes and none of the pairs."""
    frame = generate_district(rows, seed=seed)
    frame = frame[frame["sex"].isin(["F", "M"])].reset_index(drop=True)
    frame["address"] = pd.Series(["U", "R"] * len(frame))[: len(frame)].sample(
        frac=1, random_state=seed, ignore_index=True
    )
    return frame


def test_an_intersection_too_small_to_judge_asks_staff_with_the_report_once(
    ml_stores, district, staff
):
    from django.test import Client

    frame = sex_and_address()
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["sex", "address"], school="school")
    version = ingest(
        district=district, name="address", data=frame.to_csv(index=False).encode(), roles=roles
    )[0]
    run = train(version, staff, if_inconclusive="ask_approval", min_group_size=180)
    assert run_here(run) == "waiting_approval", steps_of(run)["bias"].reason
    model = ModelVersion.objects.get(workflow_run=run)
    pair = next(c for c in model.bias_report["checks"] if c["attribute"] == "sex × address")
    assert pair["outcome"] == "inconclusive" and pair["judged_groups"] == 0
    assert "at least 180 at-risk students; no group has that many" in pair["reason"]
    fu = next(g for g in model.bias_report["groups"] if g["group"] == "F × U")
    assert fu["positives"] < 180 <= fu["n"]  # the count that matters is the at-risk one
    assert fu["metrics"]["false_negative_rate"] is not None  # kept, though not judged

    client = Client()
    client.force_login(staff)
    page = client.get("/approvals/").content.decode()
    assert page.count('data-testid="decision-asked"') == 1
    assert "Approving</strong> lets this run go on with that model" in page
    assert page.count('data-testid="fairness"') == 1  # the report once, not three times
    assert page.count(model.bias_report["summary"][:60]) == 1
    assert 'data-attribute="sex × address"' in page
    assert "F × U" in page and f"{fu['positives']} at-risk students of {fu['n']} held-out" in page
    assert "Missed at-risk students (false-negative rate)" in page
    assert "false_negative_rate" not in page and "max_difference" not in page

    panel = client.get(f"/runs/{run.pk}/steps/bias/").content.decode()  # the canvas's panel
    assert panel.count('data-testid="fairness"') == 1 and 'data-attribute="sex × address"' in panel
    report_part = panel[panel.index('data-testid="fairness"') :]
    assert "false_negative_rate" not in report_part  # (the step's metric keys above stay codes)

    card = client.get(f"/models/{model.pk}/").content.decode()
    assert card.count('data-testid="fairness"') == 1
    assert 'class="groupchart flagged flagged-inconclusive intersection"' in card
    assert "not judged: fewer than the 180 at-risk students needed" in card
