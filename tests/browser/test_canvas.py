"""The workflow canvas in a real headless Chromium, with a real Celery worker on Redis: build a
workflow from an empty canvas, see refusals and validation errors come and go, save, run and watch
the blocks pass; undo and redo; versions, drafts and read-only old versions. Screenshots go to
var/test-artifacts/canvas/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.workflows.conftest import wait_for
from workflows import engine
from workflows.models import Run, StepRun, Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "canvas"


@pytest.fixture
def demo(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def page(wide_page):
    return wide_page


@pytest.fixture
def errors_of(page):
    """Every uncaught script error and console error of the page: a canvas test fails on any.
    (Chrome also logs each 4xx answer as an error; the validation API answers 400 by design.)"""
    seen: list[str] = []
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))

    def console(msg) -> None:  # noqa: ANN001
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            seen.append(f"console: {msg.text}")

    page.on("console", console)
    return seen


def _new_workflow(page, base: str, name: str) -> Workflow:
    page.goto(base + "/workflows/")
    page.get_by_test_id("new-workflow").get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create and open the canvas").click()
    page.wait_for_selector("#palette-list .palette-item")
    return Workflow.objects.get(name=name)


def _drop(page, kind: str, x: int, y: int) -> str:
    """Drag a block from the palette onto the canvas at (x, y) of the viewport; its node id."""
    before = set(
        page.locator("#nodes [data-node-id]").evaluate_all("e => e.map(n => n.dataset.nodeId)")
    )
    page.locator(f".palette-item[data-kind={kind}]").drag_to(
        page.locator("#viewport"), target_position={"x": x, "y": y}
    )
    # locators and expect, not wait_for_function: its string predicate needs eval, which the
    # page's Content-Security-Policy refuses
    expect(page.locator("#nodes [data-node-id]")).to_have_count(len(before) + 1, timeout=15_000)
    after = set(
        page.locator("#nodes [data-node-id]").evaluate_all("e => e.map(n => n.dataset.nodeId)")
    )
    (node_id,) = after - before
    return node_id


def _centre(page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    assert box, f"{selector} is not on screen"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _port(node_id: str, port: str, side: str) -> str:
    return f'[data-node-id="{node_id}"] .port.{side}[data-port="{port}"] .dot'


def _connect(page, source: str, out: str, target: str, into: str, *, check_marks=None) -> None:
    _problems_settled(page)  # as a person would: the canvas has redrawn after the last change
    x, y = _centre(page, _port(source, out, "out"))
    tx, ty = _centre(page, _port(target, into, "in"))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move((x + tx) / 2, (y + ty) / 2, steps=5)
    if check_marks:
        check_marks()
    page.mouse.move(tx, ty, steps=5)
    page.mouse.up()


def _state(page, node_id: str) -> str:
    return page.locator(f'[data-node-id="{node_id}"]').get_attribute("data-state")


def _problems_settled(page) -> None:
    page.locator("#problems:not([data-state='pending'])").wait_for(state="attached")


def test_build_save_run_from_an_empty_canvas(page, live_server, real_worker, errors_of):
    log_in(page, live_server.url, "admin")
    workflow = _new_workflow(page, live_server.url, "Canvas tour")
    assert page.locator("#nodes [data-node-id]").count() == 0

    # the palette is searchable
    page.get_by_label("Search blocks").fill("bias")
    assert page.locator(".palette-item[data-kind=bias_gate]").is_visible()
    assert page.locator(".palette-item[data-kind=wait]").count() == 0
    page.get_by_label("Search blocks").fill("")

    start = _drop(page, "manual_trigger", 30, 100)
    wait = _drop(page, "wait", 270, 100)
    approval = _drop(page, "approval_gate", 510, 100)
    notify = _drop(page, "notify", 750, 100)
    assert page.locator("#nodes [data-node-id]").count() == 4
    _problems_settled(page)
    # nothing is connected yet: the server names the unconnected inputs on their nodes
    assert _state(page, wait) == "invalid"
    assert "not connected" in page.get_by_test_id("problems").inner_text().lower()

    _connect(page, start, "start", wait, "input")
    _connect(page, wait, "done", approval, "input")
    _connect(page, approval, "approved", notify, "input")
    assert page.locator("#edges [data-edge]").count() == 3

    # an incompatible connection: while dragging, the bias gate's model input is marked and the
    # drop is refused with the reason
    bias = _drop(page, "bias_gate", 320, 330)

    def marks() -> None:
        assert "incompatible" in page.locator(
            f'[data-node-id="{bias}"] .port.in[data-port="model"]'
        ).get_attribute("class")
        assert "gives a start" in page.locator(
            f'[data-node-id="{bias}"] .port.in[data-port="model"]'
        ).get_attribute("title")
        assert "compatible" in page.locator(
            f'[data-node-id="{notify}"] .port.in[data-port="input"]'
        ).get_attribute("class")

    _connect(page, start, "start", bias, "model", check_marks=marks)
    refusal = page.get_by_test_id("refusal")
    refusal.wait_for()
    assert "gives a start" in refusal.inner_text() and "takes a model" in refusal.inner_text()
    assert page.locator("#edges [data-edge]").count() == 3
    page.screenshot(path=str(ARTIFACTS / "refused-connection.png"))
    page.locator(f'[data-node-id="{bias}"]').click()
    page.keyboard.press("Delete")
    assert page.locator(f'[data-node-id="{bias}"]').count() == 0

    # a parameter out of range: the error appears on the node and in its form, then goes away
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    seconds = page.locator(f"#param-{wait}-seconds")
    assert "Default: 5" in page.get_by_test_id("params-form").inner_text()
    seconds.fill("400")
    seconds.press("Enter")
    page.locator(f'[data-node-id="{wait}"][data-state="invalid"]').wait_for(state="attached")
    assert "seconds" in page.locator(f"#param-{wait}-seconds-error").inner_text()
    assert "Save as draft" in page.locator("#save").inner_text()
    page.screenshot(path=str(ARTIFACTS / "validation-error.png"))
    seconds.fill("1")
    seconds.press("Enter")
    page.locator(f'[data-node-id="{wait}"][data-state="ready"]').wait_for(state="attached")
    _problems_settled(page)
    assert "no problems" in page.get_by_test_id("problems").inner_text()
    assert all(_state(page, n) == "ready" for n in (start, wait, approval, notify))

    page.get_by_label("Version message").fill("first canvas version")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_test_id("save-status").filter(has_text="Saved version 1").wait_for()
    version = workflow.versions.get()
    assert not version.draft and version.message == "first canvas version"
    assert {n["kind"] for n in version.graph["nodes"]} == {
        "manual_trigger",
        "wait",
        "approval_gate",
        "notify",
    }
    assert next(n for n in version.graph["nodes"] if n["id"] == wait)["params"] == {"seconds": 1}
    page.get_by_test_id("version-list").filter(has_text="first canvas version").wait_for()

    # run: the real worker runs it; the canvas follows each node's state live
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator(f'[data-node-id="{approval}"][data-state="waiting_approval"]').wait_for(
        state="attached", timeout=60_000
    )
    assert _state(page, start) == "succeeded" and _state(page, wait) == "succeeded"
    assert "waiting for approval" in page.locator(f'[data-node-id="{approval}"]').inner_text()
    run = Run.objects.get(workflow=workflow)
    dana = get_user_model().objects.get(username="dana")
    engine.approve(run, dana, "Fine by me.", approval)
    page.locator(f'[data-node-id="{notify}"][data-state="succeeded"]').wait_for(
        state="attached", timeout=60_000
    )
    assert all(_state(page, n) == "succeeded" for n in (start, wait, approval, notify))
    assert "passed" in page.locator(f'[data-node-id="{notify}"]').inner_text()
    page.get_by_test_id("run-status").filter(has_text="passed").wait_for()
    # the side panel shows the step's logs
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    page.get_by_test_id("step-detail").filter(has_text="Waited 1 s").wait_for()
    page.screenshot(path=str(ARTIFACTS / "run-passed.png"), full_page=True)
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded", 10)
    assert StepRun.objects.filter(run=run, status="succeeded").count() == 4
    assert errors_of == []


def test_undo_redo_restores_a_deleted_node_with_its_parameters(page, live_server, demo, errors_of):
    log_in(page, live_server.url, "admin")
    _new_workflow(page, live_server.url, "Undo tour")
    wait = _drop(page, "wait", 100, 100)
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    field = page.locator(f"#param-{wait}-seconds")
    field.fill("42")
    field.press("Enter")
    page.locator(f'[data-node-id="{wait}"]').focus()
    page.keyboard.press("Delete")
    assert page.locator(f'[data-node-id="{wait}"]').count() == 0

    page.keyboard.press("Control+z")
    page.locator(f'[data-node-id="{wait}"]').wait_for()
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    assert page.locator(f"#param-{wait}-seconds").input_value() == "42"

    # undo after a parameter change goes back to the earlier value, redo forward again
    page.keyboard.press("Escape")
    page.keyboard.press("Control+z")
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    assert page.locator(f"#param-{wait}-seconds").input_value() == ""
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+z")
    page.locator(f'[data-node-id="{wait}"] .node-title').click()
    assert page.locator(f"#param-{wait}-seconds").input_value() == "42"
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+z")  # the delete again
    assert page.locator(f'[data-node-id="{wait}"]').count() == 0
    page.get_by_role("button", name="Undo").click()
    assert page.locator(f'[data-node-id="{wait}"]').count() == 1
    assert errors_of == []


def test_keyboard_duplicate_zoom_fit_and_notes(page, live_server, demo, errors_of):
    log_in(page, live_server.url, "admin")
    _new_workflow(page, live_server.url, "Keys tour")
    # a palette block can be added with the keyboard alone
    page.locator(".palette-item[data-kind=notify]").focus()
    page.keyboard.press("Enter")
    notify = page.locator("#nodes [data-node-id]").first
    notify.wait_for()
    assert notify.evaluate("n => n === document.activeElement")
    page.locator("#param-" + notify.get_attribute("data-node-id") + "-title").fill("Hello")
    page.locator("#param-" + notify.get_attribute("data-node-id") + "-title").press("Enter")
    notify.focus()
    page.keyboard.press("Control+d")
    assert page.locator("#nodes [data-node-id]").count() == 2
    copy = page.locator("#nodes [data-node-id]").nth(1)
    copy.locator(".node-title").click()
    assert (
        page.locator("#param-" + copy.get_attribute("data-node-id") + "-title").input_value()
        == "Hello"
    )
    # Tab moves between nodes
    notify.focus()
    page.keyboard.press("Tab")
    assert copy.evaluate("n => n === document.activeElement")

    page.get_by_role("button", name="Zoom in").click()
    assert page.locator("#zoom-level").inner_text() == "120%"
    for _ in range(6):
        page.get_by_role("button", name="Zoom in").click()
    assert page.locator("#zoom-level").inner_text() == "250%"  # the most it zooms
    page.locator("#nodes [data-node-id]").nth(0).focus()
    for _ in range(30):
        page.keyboard.press("Shift+ArrowRight")  # far to the right, out of view
    page.get_by_role("button", name="Fit to screen").click()
    view = page.locator("#viewport").bounding_box()
    for box in page.locator("#nodes [data-node-id]").evaluate_all(
        "ns => ns.map(n => n.getBoundingClientRect().toJSON())"
    ):
        assert view["x"] <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"]
        assert view["y"] <= box["y"] and box["y"] + box["height"] <= view["y"] + view["height"]

    page.get_by_role("button", name="Add note").click()
    page.get_by_label("Note text").fill("Ask Dana before pilots.")
    page.get_by_label("Note text").press("Tab")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_test_id("save-status").filter(has_text="Saved version 1").wait_for()
    workflow = Workflow.objects.get(name="Keys tour")
    graph = workflow.versions.get().graph
    assert graph["notes"][0]["text"] == "Ask Dana before pilots."
    assert errors_of == []


def test_drafts_versions_diff_and_read_only_old_versions(page, live_server, demo, errors_of):
    log_in(page, live_server.url, "admin")
    workflow = _new_workflow(page, live_server.url, "Draft tour")
    node = _drop(page, "notify", 100, 100)
    _problems_settled(page)
    # an unconnected notify with no start is invalid: saving keeps it as a draft that cannot run
    page.get_by_role("button", name="Save as draft (2 problems)").click()
    page.get_by_test_id("save-status").filter(has_text="as a draft").wait_for()
    assert page.locator("#run").is_disabled()
    v1 = workflow.versions.get()
    assert v1.draft and v1.errors
    with pytest.raises(engine.EngineError, match="no runnable version"):
        engine.start_run(workflow)

    start = _drop(page, "manual_trigger", 100, 300)
    _connect(page, start, "start", node, "input")
    _problems_settled(page)
    page.get_by_label("Version message").fill("connected the start")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_test_id("save-status").filter(has_text="Saved version 2.").wait_for()
    assert not page.locator("#run").is_disabled()

    versions = page.get_by_test_id("version-list")
    versions.locator("li[data-version='2']").get_by_role("button", name="Changes").click()
    diff = page.get_by_test_id("diff")
    diff.wait_for()
    assert start in diff.inner_text() and "connected" in diff.inner_text()

    # the old version opens read-only: no palette, no save, the form disabled
    versions.locator("li[data-version='1']").get_by_role("link", name="Open (read-only)").click()
    page.get_by_test_id("version-banner").filter(has_text="read-only").wait_for()
    assert page.locator("#palette").count() == 0 and page.locator("#save").count() == 0
    page.locator(f'[data-node-id="{node}"] .node-title').click()
    assert page.locator(f"#param-{node}-title").is_disabled()
    assert page.locator("#nodes [data-node-id]").count() == 1
    # a draft has no "run this version"; version 2 does, and it starts a run shown on the canvas
    assert versions.locator("li[data-version='1'] [data-testid=run-version]").count() == 0
    versions.locator("li[data-version='2'] [data-testid=run-version]").click()
    page.wait_for_url("**?run=*")
    run = Run.objects.get(workflow=workflow)
    assert run.version.number == 2
    page.get_by_test_id("run-status").wait_for()
    assert errors_of == []


def test_district_staff_see_the_canvas_read_only(page, live_server, demo, errors_of):
    from workflows.training import TRAIN_MODEL

    admin = get_user_model().objects.get(username="admin")
    from edumlops.schools.models import District

    workflow = Workflow.objects.create(
        district=District.objects.get(), name="Training", owner=admin
    )
    workflow.save_version(TRAIN_MODEL.build(), "from the recipe", admin, errors=[{"message": "x"}])
    log_in(page, live_server.url, "dana")
    page.goto(f"{live_server.url}/workflows/{workflow.pk}/")
    page.locator("#nodes [data-node-id]").nth(9).wait_for()
    assert page.locator("#palette").count() == 0
    assert "read-only" in page.get_by_test_id("version-banner").inner_text()
    assert page.locator("#edges [data-edge]").count() == 10
    assert errors_of == []


def test_canvas_script_is_served_locally():
    """No page needs the internet: the canvas's modules are in static/, none from a CDN."""
    for path in (ROOT / "static" / "js" / "canvas").glob("*.mjs"):
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    template = (ROOT / "templates" / "workflows" / "canvas.html").read_text()
    assert "https://" not in template and "http://" not in template
    assert Path(ROOT / "static" / "js" / "canvas" / "canvas.mjs").exists()


@pytest.fixture
def with_students(demo, ml_stores):
    from edumlops.datasets.models import ingest
    from edumlops.ml.datasets import Roles
    from edumlops.ml.synth import generate_district
    from edumlops.schools.models import District

    roles = Roles(
        label="at_risk", positive=["yes"], sensitive=["ses", "english_learner"], school="school"
    )
    data = generate_district(1500, seed=3).to_csv(index=False).encode()
    version, _ = ingest(
        district=District.objects.get(slug="riverside"),
        name="Students 2024-26",
        data=data,
        roles=roles,
    )
    return version


def test_a_newcomer_runs_the_early_warning_template_on_the_canvas(
    page, live_server, with_students, real_worker, errors_of
):
    """The issue's "done": from the gallery to a pilot, in the browser, on a real worker."""
    log_in(page, live_server.url, "admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name="template").first.click()
    form = page.get_by_test_id("use-early-warning")
    form.get_by_label("Workflow name").fill("Early warning")
    form.get_by_label("Riverside High School").check()
    form.get_by_role("button", name="Use this template").click()
    page.wait_for_selector("#nodes [data-node-id]")
    _problems_settled(page)
    assert "no problems" in page.get_by_test_id("problems").inner_text()
    workflow = Workflow.objects.get(name="Early warning")
    page.get_by_role("button", name="Run", exact=True).click()

    dana = get_user_model().objects.get(username="dana")
    run = wait_for(lambda: Run.objects.filter(workflow=workflow).first(), 10)
    # staff approve whatever waits (the pilot always; the bias gate when it is inconclusive)
    for _ in range(3):
        status = wait_for(
            lambda: (s := Run.objects.get(pk=run.pk).status) not in ("queued", "running") and s,
            240,
            "a pause",
        )
        if status != "waiting_approval":
            break
        page.locator("#nodes .node[data-state=waiting_approval]").first.wait_for()
        waiting = StepRun.objects.get(run=run, status="waiting_approval")
        engine.approve(run, dana, "Looked at the card.", waiting.node_id)
    assert Run.objects.get(pk=run.pk).status == "succeeded", real_worker.output()[-3000:]
    page.get_by_test_id("run-status").filter(has_text="passed").wait_for(timeout=30_000)
    states = page.locator("#nodes [data-node-id]").evaluate_all(
        "ns => ns.map(n => n.dataset.state)"
    )
    assert set(states) == {"succeeded"}, states
    # the bias gate's report (table and chart) opens in the side panel
    page.locator('[data-node-id="bias"] .node-title').click()
    detail = page.get_by_test_id("step-detail")
    detail.get_by_test_id("fairness").wait_for()
    assert detail.get_by_test_id("group-chart").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "early-warning-passed.png"), full_page=True)
    assert errors_of == []


def test_multi_select_move_pan_and_delete_several(page, live_server, demo, errors_of):
    log_in(page, live_server.url, "admin")
    _new_workflow(page, live_server.url, "Select tour")
    a = _drop(page, "notify", 40, 60)
    b = _drop(page, "wait", 300, 60)
    c = _drop(page, "manual_trigger", 40, 300)
    # Shift+click adds to the selection; dragging one moves all selected
    page.locator(f'[data-node-id="{a}"] .node-title').click()
    page.locator(f'[data-node-id="{b}"] .node-title').click(modifiers=["Shift"])
    assert page.locator("#nodes .node.selected").count() == 2
    _problems_settled(page)
    before = {n: page.locator(f'[data-node-id="{n}"]').bounding_box() for n in (a, b, c)}
    x, y = _centre(page, f'[data-node-id="{a}"] .node-title')
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 80, steps=6)
    page.mouse.up()
    _problems_settled(page)  # the move is checked by the server; the canvas redraws after
    after = {n: page.locator(f'[data-node-id="{n}"]').bounding_box() for n in (a, b, c)}
    for n in (a, b):
        assert round(after[n]["x"] - before[n]["x"]) == 60
        assert round(after[n]["y"] - before[n]["y"]) == 80
    assert after[c] == before[c]
    # dragging the background pans everything
    view = page.locator("#viewport").bounding_box()
    page.mouse.move(view["x"] + view["width"] - 30, view["y"] + view["height"] - 30)
    page.mouse.down()
    page.mouse.move(view["x"] + view["width"] - 130, view["y"] + view["height"] - 80, steps=5)
    page.mouse.up()
    _problems_settled(page)
    panned = page.locator(f'[data-node-id="{c}"]').bounding_box()
    assert round(panned["x"] - after[c]["x"]) == -100 and round(panned["y"] - after[c]["y"]) == -50
    # Shift+drag on the background selects the blocks inside the area; Delete removes them
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Fit to screen").click()
    assert page.locator("#nodes .node.selected").count() == 0
    _problems_settled(page)
    view = page.locator("#viewport").bounding_box()
    page.mouse.move(view["x"] + 5, view["y"] + 5)
    page.keyboard.down("Shift")
    page.mouse.down()
    page.mouse.move(view["x"] + view["width"] - 5, view["y"] + view["height"] - 5, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert page.locator("#nodes .node.selected").count() == 3
    page.keyboard.press("Delete")
    assert page.locator("#nodes [data-node-id]").count() == 0
    page.keyboard.press("Control+z")
    assert page.locator("#nodes [data-node-id]").count() == 3
    assert errors_of == []


def test_blocks_are_connected_and_disconnected_with_the_keyboard(
    page, live_server, demo, errors_of
):
    """Without a mouse: add blocks from the palette, connect them from the side panel."""
    log_in(page, live_server.url, "admin")
    workflow = _new_workflow(page, live_server.url, "Keyboard tour")
    for kind in ("manual_trigger", "wait"):
        page.locator(f".palette-item[data-kind={kind}]").focus()
        page.keyboard.press("Enter")
    start, wait = page.locator("#nodes [data-node-id]").evaluate_all(
        "ns => ns.map(n => n.dataset.nodeId)"
    )
    page.locator(f'[data-node-id="{start}"]').focus()
    connect = page.get_by_test_id("connections")
    choice = connect.get_by_label("Connect “Start” (trigger) to")
    choice.select_option(label="Wait a moment › After")
    connect.get_by_role("button", name="Connect").click()
    assert page.locator("#edges [data-edge]").count() == 1
    _problems_settled(page)
    assert "no problems" in page.get_by_test_id("problems").inner_text()
    # only compatible inputs are offered: a trigger cannot feed a bias gate's model input
    page.locator(".palette-item[data-kind=bias_gate]").focus()
    page.keyboard.press("Enter")
    page.locator(f'[data-node-id="{start}"]').focus()
    offered = page.get_by_test_id("connections").locator("select option").all_inner_texts()
    assert not any("Bias gate" in o for o in offered)
    page.get_by_test_id("connections").get_by_role("button", name="Disconnect").click()
    assert page.locator("#edges [data-edge]").count() == 0
    page.keyboard.press("Control+z")
    assert page.locator("#edges [data-edge]").count() == 1
    assert workflow.versions.count() == 0
    assert errors_of == []


def test_reload_during_and_after_a_run_shows_its_states_and_links_to_it(
    page, live_server, real_worker, errors_of
):
    """A schedule fired now from the Run button (chosen among two triggers); reloading the
    canvas while it runs and after it ended shows the run's block states and a link to it; saving
    the unchanged canvas makes no version."""
    from edumlops.schools.models import District

    admin = get_user_model().objects.get(username="admin")
    workflow = Workflow.objects.create(
        district=District.objects.get(), name="Weekly check", owner=admin
    )

    def at(node: dict, x: int, y: int) -> dict:
        return {**node, "version": 1, "position": {"x": x, "y": y}}

    graph = {
        "nodes": [
            at({"id": "go", "kind": "manual_trigger", "params": {}}, 0, 0),
            at(
                {"id": "weekly", "kind": "schedule_trigger", "params": {}, "label": "Every Monday"},
                0,
                200,
            ),
            at({"id": "pause", "kind": "wait", "params": {"seconds": 4}}, 260, 100),
            at({"id": "tell", "kind": "notify", "params": {"title": "Checked"}}, 520, 100),
        ],
        "edges": [
            {"source": "go", "source_port": "start", "target": "pause", "target_port": "input"},
            {"source": "weekly", "source_port": "start", "target": "pause", "target_port": "input"},
            {"source": "pause", "source_port": "done", "target": "tell", "target_port": "input"},
        ],
        "notes": [],
    }
    workflow.save_version(graph, "two triggers", admin)
    log_in(page, live_server.url, "admin")
    url = f"{live_server.url}/workflows/{workflow.pk}/"
    page.goto(url)
    page.locator('[data-node-id="tell"]').wait_for()
    assert page.get_by_test_id("run-bar").is_hidden()  # no run yet
    _problems_settled(page)
    # saving the unchanged canvas makes no version
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_test_id("save-status").filter(
        has_text="No changes since version 1: nothing saved."
    ).wait_for()
    assert workflow.versions.count() == 1

    # two triggers: the Run button asks which; fire the schedule now
    trigger = page.get_by_test_id("run-trigger")
    assert trigger.is_visible() and trigger.input_value() == "go"
    trigger.select_option("weekly")
    assert 'firing "Every Monday" by hand' in page.locator("#run").get_attribute("title")
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator('[data-node-id="pause"][data-state="running"]').wait_for(
        state="attached", timeout=60_000
    )
    run = Run.objects.get(workflow=workflow)
    assert run.trigger_node == "weekly"

    # reload while it runs: the states are the run's, not "ready", and the bar links to it
    page.reload()
    page.locator('[data-node-id="weekly"][data-state="succeeded"]').wait_for(state="attached")
    assert _state(page, "go") == "skipped"
    assert _state(page, "pause") in ("running", "succeeded")
    link = page.get_by_test_id("run-link")
    assert link.get_attribute("href") == f"/runs/{run.pk}/"
    assert link.inner_text() == f"Run {run.pk}"
    assert page.get_by_test_id("run-started").inner_text() == (
        "Started by hand by Ada Admin: fired the 'Every Monday' trigger now."
    )
    page.locator('[data-node-id="tell"][data-state="succeeded"]').wait_for(
        state="attached", timeout=60_000
    )

    # reload after it ended: still the run's states, the status in words, the link
    page.reload()
    page.locator('[data-node-id="tell"][data-state="succeeded"]').wait_for(state="attached")
    assert _state(page, "pause") == "succeeded" and _state(page, "go") == "skipped"
    page.get_by_test_id("run-status").filter(has_text="passed").wait_for()
    assert page.get_by_test_id("run-link").get_attribute("href") == f"/runs/{run.pk}/"
    page.screenshot(path=str(ARTIFACTS / "reload-run-states.png"), full_page=True)
    # the link opens the run, which says how it started
    page.get_by_test_id("run-link").click()
    page.get_by_test_id("run-started").filter(
        has_text="Started by hand by Ada Admin: fired the 'Every Monday' trigger now."
    ).wait_for()

    # a trigger connected to nothing is a problem named on its node, like any other
    page.goto(url)
    page.locator('[data-node-id="tell"]').wait_for()
    loose = _drop(page, "manual_trigger", 700, 420)
    page.locator(f'[data-node-id="{loose}"][data-state="invalid"]').wait_for(state="attached")
    _problems_settled(page)
    assert (
        f'Node "{loose}": the trigger "Start by hand" is connected to nothing'
        in page.get_by_test_id("problems").inner_text()
    )
    assert "1 problem" in page.locator(f'[data-node-id="{loose}"]').inner_text()
    page.screenshot(path=str(ARTIFACTS / "unconnected-trigger.png"))
    assert errors_of == []
