"""The audit trail on real PostgreSQL: actions write records, the chain verifies, and an edit or
a deletion made directly in the database is found by `verify_audit`; the page filters and
exports CSV for district staff only."""

from __future__ import annotations

import csv
import io
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from edumlops.audit.models import AuditError, AuditRecord, record, verify
from edumlops.datasets.models import ingest
from edumlops.ml.synth import generate_district
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

GRAPH = {"nodes": [{"id": "start", "kind": "manual_trigger"}], "edges": []}


def some_records(district, staff, n=3):
    workflow = Workflow.objects.create(district=district, name="W", owner=staff)
    for i in range(n):
        workflow.save_version(GRAPH, f"save {i}", staff)
    return workflow


def test_saving_a_workflow_version_and_uploading_a_dataset_are_recorded(
    district, staff, settings, tmp_path
):
    settings.DATASET_DIR = tmp_path
    some_records(district, staff, n=2)
    data = generate_district(300, seed=0).to_csv(index=False).encode()
    version, _ = ingest(district=district, name="Gen", data=data, user=staff)
    ingest(district=district, name="Gen", data=data, user=staff)  # same bytes: no new record
    actions = list(AuditRecord.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["workflow_version", "workflow_version", "dataset_upload"]
    upload = AuditRecord.objects.get(action="dataset_upload")
    assert upload.actor == staff and upload.district == district
    assert upload.after["sha256"] == version.sha256 and upload.target_label == "Gen v1"
    second = AuditRecord.objects.filter(action="workflow_version").order_by("id")[1]
    assert second.before == {"version": 1} and second.after["version"] == 2
    assert verify() == (3, None)
    call_command("verify_audit", stdout=(out := io.StringIO()))
    assert "intact: 3 record(s)" in out.getvalue()


def test_an_edit_in_the_database_is_found_and_named(district, staff):
    some_records(district, staff, n=4)
    target = AuditRecord.objects.order_by("id")[2]
    with connection.cursor() as cursor:  # what someone with database access could do
        cursor.execute(
            "UPDATE audit_auditrecord SET reason = %s WHERE id = %s", ["nothing", target.id]
        )
    with pytest.raises(CommandError, match=f"broken at record #{target.id}.*was edited"):
        call_command("verify_audit")


def test_a_deleted_row_breaks_the_link_of_the_next(district, staff):
    some_records(district, staff, n=4)
    rows = list(AuditRecord.objects.order_by("id"))
    AuditRecord.objects.filter(pk=rows[1].pk).delete()  # a queryset delete bypasses the model
    checked, broken = verify()
    assert checked == 1 and broken.record_id == rows[2].id
    assert "deleted, inserted or changed" in broken.problem


def test_records_cannot_be_changed_through_the_model(district, staff):
    some_records(district, staff, n=1)
    row = AuditRecord.objects.get()
    row.reason = "changed"
    with pytest.raises(AuditError, match="append-only"):
        row.save()
    with pytest.raises(AuditError, match="append-only"):
        row.delete()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_chain(district, staff):
    def write(i):
        from django.db import connections

        try:
            for j in range(5):
                record(action="rollback", actor=staff, target=district, reason=f"{i}-{j}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify() == (20, None)


def test_approvals_are_recorded_with_the_comment(district, staff):
    from workflows import engine
    from workflows.models import StepRun

    workflow = Workflow.objects.create(district=district, name="Gate", owner=staff)
    graph = {
        "nodes": [
            {"id": "start", "kind": "manual_trigger"},
            {"id": "ok", "kind": "approval_gate"},
        ],
        "edges": [
            {"source": "start", "source_port": "start", "target": "ok", "target_port": "input"}
        ],
    }
    workflow.save_version(graph, "gate", staff)
    run = engine.start_run(workflow, user=staff)
    StepRun.objects.filter(run=run, node_id="ok").update(status="waiting_approval")
    run.status = "waiting_approval"
    run.save(update_fields=["status"])
    engine.reject(run, staff, "Not during testing week.")
    rejection = AuditRecord.objects.get(action="rejection")
    assert rejection.reason == "Not during testing week."
    assert rejection.after == {"decision": "reject", "step": "ok"}
    assert verify()[1] is None


def test_the_page_filters_and_exports_for_staff_only(district, staff, teacher_a):
    some_records(district, staff, n=3)
    record(action="rollback", actor=staff, target=district, reason="bad version")
    client = Client()
    client.force_login(staff)
    page = client.get("/audit/", {"action": "rollback"})
    assert page.status_code == 200
    text = page.content.decode()
    assert "bad version" in text and "save 0" not in text
    export = client.get("/audit/", {"export": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:5] == ["id", "created_at", "district", "actor", "action"]
    assert len(rows) == 5 and rows[1][4] == "rollback"  # newest first
    bad = client.get("/audit/", {"from": "yesterday"})
    assert "is not a date" in bad.content.decode()

    client.force_login(teacher_a)
    assert client.get("/audit/").status_code == 403


def test_the_csv_export_neutralises_formulas_and_keeps_numbers(district, staff, settings, tmp_path):
    settings.DATASET_DIR = tmp_path
    data = generate_district(200, seed=1).to_csv(index=False).encode()
    ingest(district=district, name='=HYPERLINK("http://x","y")', data=data, user=staff)
    record(action="rollback", actor=staff, target=district, reason="@SUM(1+1)")
    record(action="rollback", actor=staff, target=district, reason="-3.5", before={"score": -3.5})
    client = Client()
    client.force_login(staff)
    export = client.get("/audit/", {"export": "csv"})
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    header, *body = rows
    by_action = {}
    for row in body:
        cells = dict(zip(header, row, strict=True))
        by_action.setdefault(cells["action"], []).append(cells)
    upload = by_action["dataset_upload"][0]
    assert upload["target"] == '\'=HYPERLINK("http://x","y") v1'
    reasons = [r["reason"] for r in by_action["rollback"]]
    assert reasons == ["'-3.5", "'@SUM(1+1)"]  # newest first; text "-3.5" is text, quoted
    assert by_action["rollback"][0]["before"] == '{"score": -3.5}'  # JSON starts with "{"
    ids = [int(r["id"]) for r in (upload, *by_action["rollback"])]  # numbers unaltered
    assert all(i > 0 for i in ids)
    for row in body:
        for cell in row:
            assert not cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")), cell
