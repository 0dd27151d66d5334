"""The template gallery: every template's graph, the missing blocks it lists, making a workflow
from one (API and page), permissions and bad input — and the early-warning template made through
the API and run end to end on a real worker."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from tests.workflows import draft_template
from tests.workflows.conftest import wait_for
from workflows import engine
from workflows.blocks import REGISTRY
from workflows.compiler import validate
from workflows.gallery import TEMPLATES, MissingBlock, Step
from workflows.models import Run, StepRun, Workflow

SEED_TEMPLATES = {
    "early-warning",
    "drift-retrain",
    "short-answer-scoring",
    "enrollment-forecast",
}
DATASET_REQUIRED = 'Node "{}": parameter "dataset_version" is invalid: Field required.'


@pytest.fixture
def draft(tmp_path, monkeypatch):
    """A template with two steps whose blocks do not exist (every shipped one can run)."""
    return draft_template.install(tmp_path, monkeypatch)


@pytest.fixture
def api():
    def as_user(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return as_user


def make_version(district, rows=300, seed=0, **roles):
    roles = {
        "label": "at_risk",
        "positive": ["yes"],
        "sensitive": ["english_learner"],
        "school": "school",
        **roles,
    }
    data = generate_district(rows, seed=seed).to_csv(index=False).encode()
    version, _ = ingest(district=district, name=f"Students {seed}", data=data, roles=Roles(**roles))
    return version


def dataset_node(template):
    return next(s.id for s in template.steps if isinstance(s, Step) and s.kind == "dataset")


def behind_a_gap(template):
    """Node ids fed (directly or further down) by a missing step."""
    gaps = {s.id for s in template.missing}
    behind: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step in template.steps:
            fed = {src for src, _, _ in step.inlets}
            if step.id not in behind and fed & (gaps | behind):
                behind.add(step.id)
                changed = True
    return behind


# --- the templates --------------------------------------------------------------------------
def test_the_gallery_has_the_four_templates_from_the_seed_articles():
    assert set(TEMPLATES) >= SEED_TEMPLATES
    for template in TEMPLATES.values():
        assert template.summary and template.why and template.source.seed.endswith(".txt")
        assert template.build()["notes"], f"{template.key} explains its parts in sticky notes"


def check_graph(template):
    data = dataset_node(template)
    errors = validate(template.build())
    assert errors[0].message.startswith(DATASET_REQUIRED.format(data))
    assert errors[0].node == data

    chosen = template.build(template.parse({"dataset_version": 7}))
    assert next(n for n in chosen["nodes"] if n["id"] == data)["params"]["dataset_version"] == 7
    errors = validate(chosen)
    if template.available:
        assert errors == []
    else:  # only the hole where a missing block goes: what it would feed is not connected
        assert errors
        assert {e.code for e in errors} <= {"missing_input", "unreachable"}
        assert {e.node for e in errors} <= behind_a_gap(template)


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_a_template_graph_has_no_error_but_the_choice_left_out(key):
    assert TEMPLATES[key].available
    check_graph(TEMPLATES[key])


def test_a_draft_template_graph_has_no_error_but_the_choice_left_out_and_its_missing_blocks(
    draft,
):
    assert not draft.available
    check_graph(draft)


def test_a_template_needing_blocks_that_do_not_exist_lists_them_and_never_fakes_them(draft):
    template = TEMPLATES[draft_template.KEY]
    assert not template.available
    assert [m.kind for m in template.missing] == draft_template.MISSING_KINDS
    for gap in template.missing:
        assert isinstance(gap, MissingBlock) and len(gap.what_it_would_do) > 80
        assert (gap.kind, 1) not in REGISTRY
    graph = template.build()
    assert all((n["kind"], 1) in REGISTRY for n in graph["nodes"])
    notes = " ".join(n["text"] for n in graph["notes"])
    assert all(f"MISSING BLOCK — {m.label}" in notes for m in template.missing)


def test_the_available_templates_use_only_existing_blocks():
    for key in (
        "early-warning",
        "drift-retrain",
        "watch-model",
        "federated-early-warning",
        "enrollment-forecast",
        "short-answer-scoring",
        "adaptive-practice",
    ):
        assert TEMPLATES[key].available and TEMPLATES[key].missing == []


def test_the_federated_template_trains_across_schools_from_a_schema_sample():
    graph = TEMPLATES["federated-early-warning"].build()
    kinds = [n["kind"] for n in graph["nodes"]]
    assert "train_federated" in kinds and "split" not in kinds and "train_model" not in kinds
    assert {
        "source": "data",
        "source_port": "dataset",
        "target": "train",
        "target_port": "schema",
    } in [
        {k: e[k] for k in ("source", "source_port", "target", "target_port")}
        for e in graph["edges"]
    ]
    assert kinds.index("bias_gate") < kinds.index("pilot_rollout")


def test_early_warning_runs_the_whole_chain_to_a_pilot():
    graph = TEMPLATES["early-warning"].build()
    kinds = [n["kind"] for n in graph["nodes"]]
    assert kinds == [
        "manual_trigger",
        "dataset",
        "minimise_data",
        "split",
        "train_model",
        "validate_model",
        "bias_gate",
        "export_onnx",
        "set_alias",
        "model_card",
        "pilot_rollout",
        "edge_sync",
        "notify",
    ]
    pilot = next(n for n in graph["nodes"] if n["kind"] == "pilot_rollout")
    assert pilot["params"]["approval_required"] is True
    assert pilot["params"]["selection"] == "stratified"
    named = TEMPLATES["early-warning"].build(
        TEMPLATES["early-warning"].parse({"pilot_schools": ["a"], "max_gap": 0.2})
    )
    pilot = next(n for n in named["nodes"] if n["kind"] == "pilot_rollout")
    assert pilot["params"]["selection"] == "names" and pilot["params"]["schools"] == ["a"]
    bias = next(n for n in named["nodes"] if n["kind"] == "bias_gate")
    assert bias["params"]["max_difference"] == 0.2


def test_drift_retraining_starts_at_term_start_and_retrains_only_after_drift():
    graph = TEMPLATES["drift-retrain"].build()
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["term"]["kind"] == "term_start_trigger"
    assert nodes["check"]["params"] == {"metric": "new_alerts", "operator": ">=", "threshold": 1}
    assert {
        "source": "check",
        "source_port": "passed",
        "target": "data",
        "target_port": "start",
    } in (graph["edges"])


# --- the API --------------------------------------------------------------------------------
def test_the_api_lists_every_template_with_its_steps_missing_blocks_and_choices(
    api, teacher_a, draft
):
    data = api(teacher_a).get("/api/templates/").json()
    by_key = {t["key"]: t for t in data}
    assert set(by_key) >= SEED_TEMPLATES | {draft_template.KEY}
    unfinished = by_key[draft_template.KEY]
    assert unfinished["available"] is False
    assert [m["kind"] for m in unfinished["missing"]] == draft_template.MISSING_KINDS
    assert [s["missing"] for s in unfinished["steps"]].count(True) == 2
    assert by_key["short-answer-scoring"]["available"] is True
    early = by_key["early-warning"]
    assert early["available"] is True and early["missing"] == []
    assert early["starts"] == "when you press Run"
    assert by_key["drift-retrain"]["starts"] == "by itself (at each new term)"
    assert [c["name"] for c in early["choices"]] == [
        "dataset_version",
        "pilot_schools",
        "model_name",
        "max_gap",
    ]
    assert early["choices"][0]["to_run"] is True
    assert early["graph"]["nodes"][0]["kind"] == "manual_trigger"


def test_using_a_template_makes_a_workflow_and_a_runnable_first_version(
    api, ml_stores, district, school_a, school_b, district_admin
):
    version = make_version(district)
    response = api(district_admin).post(
        "/api/templates/early-warning/use/",
        {
            "name": "Early warning 2026",
            "choices": {"dataset_version": version.pk, "pilot_schools": ["a", "Birch School"]},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    workflow = Workflow.objects.get(pk=body["id"])
    assert body == {
        "id": workflow.pk,
        "version": 1,
        "draft": False,
        "errors": [],
        "url": f"/workflows/{workflow.pk}/",
    }
    assert (workflow.district, workflow.owner, workflow.name) == (
        district,
        district_admin,
        "Early warning 2026",
    )
    graph = workflow.latest_version().graph
    data = next(n for n in graph["nodes"] if n["id"] == "data")
    assert data["params"] == {"dataset_version": version.pk}
    assert workflow.runnable_version().number == 1


def test_a_choice_left_out_saves_a_draft_whose_errors_say_what_to_fill_in(api, district_admin):
    response = api(district_admin).post(
        "/api/templates/early-warning/use/", {"name": "Later"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["draft"] is True
    assert [e["node"] for e in body["errors"]] == ["data"]
    assert body["errors"][0]["message"].startswith(DATASET_REQUIRED.format("data"))
    workflow = Workflow.objects.get(pk=body["id"])
    assert workflow.runnable_version() is None
    with pytest.raises(engine.EngineError, match="no runnable version"):
        engine.start_run(workflow, user=None)


def test_a_template_with_missing_blocks_is_saved_as_a_draft_naming_them(
    api, ml_stores, district, district_admin, draft
):
    version = make_version(district)
    response = api(district_admin).post(
        f"/api/templates/{draft_template.KEY}/use/",
        {"name": "Feedback", "choices": {"dataset_version": version.pk}},
        format="json",
    )
    body = response.json()
    assert response.status_code == 201 and body["draft"] is True
    missing = [e["message"] for e in body["errors"] if e["code"] == "missing_block"]
    assert len(missing) == 2
    assert missing[0].startswith(
        'Missing block "Train an essay-feedback model" (train_essay_feedback)'
    )
    assert Workflow.objects.get(pk=body["id"]).runnable_version() is None


@pytest.mark.parametrize("user", ["teacher_a", "staff", "outsider", "nobody"])
def test_only_admins_make_workflows_from_templates(api, request, district, user):
    who = request.getfixturevalue(user)
    response = api(who).post(
        "/api/templates/early-warning/use/",
        {"name": "Mine", "district": district.pk},
        format="json",
    )
    assert response.status_code == 403
    assert not Workflow.objects.exists()


def test_an_admin_of_another_district_may_not_use_this_one(
    api, make_user, district, other_district
):
    """A district the admin does not see is named like an unknown one: 400 on `district`."""
    admin = make_user("far_admin", "admin", district=other_district)
    response = api(admin).post(
        "/api/templates/early-warning/use/",
        {"name": "Mine", "district": district.pk},
        format="json",
    )
    unknown = api(admin).post(
        "/api/templates/early-warning/use/",
        {"name": "Mine", "district": 999_999},
        format="json",
    )
    assert response.status_code == unknown.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["district"]
    assert not Workflow.objects.exists()


def test_an_unknown_template_is_404(api, district_admin):
    response = api(district_admin).post("/api/templates/nope/use/", {"name": "x"}, format="json")
    assert response.status_code == 404


def _bad(api, user, choices, template="early-warning", **body):
    response = api(user).post(
        f"/api/templates/{template}/use/",
        {"name": "Bad", "choices": choices, **body},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert not Workflow.objects.filter(name="Bad").exists()
    return by_field(response.json())


def by_field(body: dict) -> dict:
    """The one error shape's entries as {field: [messages]} (dotted fields nested)."""
    assert body["code"] == "invalid" and body["detail"]
    out: dict = {}
    for entry in body["errors"]:
        head, _, rest = entry["field"].partition(".")
        if rest:
            out.setdefault(head, {}).setdefault(rest, []).append(entry["message"])
        else:
            out.setdefault(head, []).append(entry["message"])
    return out


def test_bad_choices_are_400_naming_the_field_and_the_fix(
    api, ml_stores, district, other_district, school_a, district_admin
):
    foreign = make_version(other_district, seed=1)
    assert _bad(api, district_admin, {"dataset_version": foreign.pk}) == {
        "choices": {
            "dataset_version": [
                f"There is no dataset version {foreign.pk} in Maple Valley: pick one listed on "
                "the Datasets page of this district."
            ]
        }
    }
    unmarked = make_version(district, seed=2, sensitive=[])
    message = _bad(api, district_admin, {"dataset_version": unmarked.pk})["choices"][
        "dataset_version"
    ][0]
    assert message == (
        f'"{unmarked}" has no sensitive attribute marked: mark it on the dataset\'s page '
        f"(/datasets/versions/{unmarked.pk}/) first."
    )
    no_label = make_version(district, seed=3, label=None, positive=[])
    message = _bad(api, district_admin, {"dataset_version": no_label.pk})["choices"][
        "dataset_version"
    ][0]
    assert message.startswith(f'"{no_label}" has no label column and positive class marked')
    assert message.endswith("define the outcome from one, e.g. a grade below 10).")
    message = _bad(api, district_admin, {"pilot_schools": ["zz"]})["choices"]["pilot_schools"][0]
    assert message.startswith("No school 'zz' in Maple Valley: use school codes or names")
    message = _bad(api, district_admin, {"max_gap": 2})["choices"]["max_gap"][0]
    assert message.startswith("Largest allowed gap between groups: Input should be less than")
    message = _bad(api, district_admin, {"model_name": "Not OK"})["choices"]["model_name"][0]
    assert message.startswith("Model name: String should match pattern")
    message = _bad(api, district_admin, {"colour": "red"})["choices"]["colour"][0]
    assert message == (
        "This template has no choice 'colour' (its choices: dataset_version, pilot_schools, "
        "model_name, max_gap)."
    )
    assert _bad(api, district_admin, {}, name="")["name"] == ["This field may not be blank."]
    assert "district" in _bad(api, district_admin, {}, district=999)


def test_a_second_workflow_of_the_same_name_is_400(api, district_admin):
    first = api(district_admin).post(
        "/api/templates/watch-model/use/", {"name": "Bad"}, format="json"
    )
    assert first.status_code == 201
    response = api(district_admin).post(
        "/api/templates/watch-model/use/", {"name": "Bad"}, format="json"
    )
    assert response.status_code == 400
    assert by_field(response.json()) == {
        "name": ["Maple Valley already has a workflow named “Bad”: choose another name."]
    }
    assert Workflow.objects.filter(name="Bad").count() == 1


def test_an_admin_of_several_districts_names_the_district(
    api, district, other_district, platform_admin
):
    body = _bad(api, platform_admin, {})
    assert body["district"][0].startswith("You manage several districts: name one of")
    response = api(platform_admin).post(
        "/api/templates/watch-model/use/",
        {"name": "Watch", "district": other_district.pk},
        format="json",
    )
    assert response.status_code == 201
    assert Workflow.objects.get(name="Watch").district == other_district


# --- the page -------------------------------------------------------------------------------
def test_the_page_shows_every_card_and_the_form_to_admins(
    client, ml_stores, district, district_admin, draft
):
    make_version(district)
    client.force_login(district_admin)
    response = client.get("/workflows/templates/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-testid="template-card"') == len(TEMPLATES)
    assert html.count('data-testid="missing-badge"') == 2  # the draft template's two
    assert "Cannot run yet:" in html
    assert 'data-testid="use-early-warning"' in html
    assert "Students 0 v1 — 300 rows, label at_risk" in html


def test_an_admin_of_several_districts_picks_the_district_on_the_form(
    client, district, other_district, platform_admin
):
    client.force_login(platform_admin)
    html = client.get("/workflows/templates/").content.decode()
    assert html.count('<select name="district" required>') == len(TEMPLATES)
    response = client.post("/workflows/templates/", {"template": "watch-model", "name": "Watch"})
    assert response.status_code == 400
    assert "You manage several districts: name one of" in response.content.decode()
    response = client.post(
        "/workflows/templates/",
        {"template": "watch-model", "name": "Watch", "district": str(other_district.pk)},
    )
    assert response.status_code == 302
    assert Workflow.objects.get(name="Watch").district == other_district


def test_the_page_is_read_only_for_teachers(client, teacher_a):
    client.force_login(teacher_a)
    response = client.get("/workflows/templates/")
    assert response.status_code == 200
    assert b'data-testid="gallery-readonly"' in response.content
    assert b'data-testid="use-' not in response.content  # no form
    posted = client.post("/workflows/templates/", {"template": "early-warning", "name": "x"})
    assert posted.status_code == 403


def test_the_form_makes_the_workflow_and_opens_it_on_the_canvas(
    client, ml_stores, district, school_a, district_admin
):
    version = make_version(district)
    client.force_login(district_admin)
    response = client.post(
        "/workflows/templates/",
        {
            "template": "early-warning",
            "name": "Early warning",
            "dataset_version": str(version.pk),
            "pilot_schools": ["a"],
            "model_name": "at-risk",
            "max_gap": "0.15",
        },
    )
    workflow = Workflow.objects.get(name="Early warning")
    assert response.status_code == 302
    assert response["Location"] == f"/workflows/{workflow.pk}/"
    version_1 = workflow.latest_version()
    assert not version_1.draft
    params = {n["id"]: n["params"] for n in version_1.graph["nodes"]}
    assert params["pilot"]["schools"] == ["a"] and params["bias"]["max_difference"] == 0.15


def test_the_form_says_a_template_with_missing_blocks_was_saved_as_a_draft(
    client, district_admin, draft
):
    client.force_login(district_admin)
    response = client.post(
        "/workflows/templates/", {"template": draft_template.KEY, "name": "Feedback"}
    )
    assert response.status_code == 302
    workflow = Workflow.objects.get(name="Feedback")
    assert workflow.latest_version().draft
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == (
        "“Feedback” was saved as a draft that cannot run: it needs 2 block(s) that do not exist "
        "yet (the MISSING BLOCK notes on the canvas say what they would do). 5 other problem(s) "
        "are marked on the canvas."
    )


def test_the_form_shows_a_bad_choice_on_its_card_and_writes_nothing(
    client, ml_stores, district, district_admin
):
    client.force_login(district_admin)
    response = client.post(
        "/workflows/templates/",
        {"template": "early-warning", "name": "Early warning", "max_gap": "3"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert html.count('data-testid="use-error"') == 1
    assert "Largest allowed gap between groups:" in html
    assert 'value="3"' in html  # what was typed is kept
    assert not Workflow.objects.exists()


# --- a template is instantiated and runs ----------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_early_warning_template_is_made_through_the_api_and_runs_to_its_pilot(
    api, ml_stores, worker, district, school_a, school_b, district_admin, staff
):
    version = make_version(district, rows=4000, sensitive=["english_learner"])
    response = api(district_admin).post(
        "/api/templates/early-warning/use/",
        {
            "name": "Early warning",
            "choices": {"dataset_version": version.pk, "pilot_schools": [school_a.code]},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["draft"] is False
    workflow = Workflow.objects.get(pk=response.json()["id"])
    run = engine.start_run(workflow, user=district_admin)

    def settled():
        run.refresh_from_db()
        return run.finished or run.status == Run.Status.WAITING_APPROVAL

    decided = []
    try:
        for _ in range(3):  # the pilot asks district staff; an inconclusive bias check may too
            wait_for(settled, timeout=300, what=f"run {run.pk} to pause or end")
            if run.finished:
                break
            waiting = StepRun.objects.get(run=run, status=StepRun.Status.WAITING_APPROVAL)
            engine.approve(run, staff, "Checked the model card.", waiting.node_id)
            decided.append(waiting.node_id)
            wait_for(
                lambda w=waiting: StepRun.objects.get(pk=w.pk).status != "waiting_approval",
                timeout=120,
                what=f"{waiting.node_id} to resume",
            )
    finally:
        steps = {s.node_id: s for s in run.steps.all()}
        print({n: (s.status, s.reason) for n, s in steps.items()}, worker.output()[-3000:])
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    assert "pilot" in decided
    assert set(steps) == {n["id"] for n in workflow.latest_version().graph["nodes"]}
    assert all(s.status == StepRun.Status.SUCCEEDED for s in steps.values())
    from edumlops.deployments.models import Deployment

    pilot = Deployment.objects.get(workflow_run=run, scope="pilot")
    assert list(pilot.schools.all()) == [school_a]
