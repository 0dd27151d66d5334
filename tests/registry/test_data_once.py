"""A training run loads its dataset once: the Split step stores its two parts (named by their
SHA-256, under var/frames/) and Train, Validate, the bias gate and Export read them by that hash.
Stored parts that are gone or changed are rebuilt from the dataset version, and the run gives the
same numbers; outputs of runs from before (no hash) still work.

Steps run in this process against the real database and a real MLflow store; the counters wrap
the real loaders (they count, then call through)."""

from __future__ import annotations

import pytest

from edumlops.datasets import models as datasets_models
from edumlops.datasets.models import DatasetVersion, ingest
from edumlops.ml import frames
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion
from tests.registry.conftest import run_here, steps_of
from workflows import engine
from workflows.blocks.data import pseudonym_key
from workflows.compiler import plan
from workflows.models import Run, StepRun
from workflows.training import TrainingRequest, start_training

pytestmark = pytest.mark.django_db

ROLES = Roles(label="at_risk", positive=["yes"], sensitive=["english_learner"], school="school")
READERS = ("train", "validate", "bias", "export")


@pytest.fixture
def frames_dir(ml_stores, settings):
    settings.VAR_DIR = ml_stores
    return ml_stores / "frames"


@pytest.fixture
def version(district):
    data = generate_district(3000, seed=0).to_csv(index=False).encode()
    return ingest(district=district, name="Riverside", data=data, roles=ROLES)[0]


@pytest.fixture
def loads(monkeypatch) -> dict[str, int]:
    """How often the dataset's rows are read and their identifiers hashed."""
    counts = {"read": 0, "hash": 0}
    read, minimise = DatasetVersion.frame, datasets_models.apply_minimisation

    def counted_read(self):
        counts["read"] += 1
        return read(self)

    def counted_minimise(*args, **kwargs):
        counts["hash"] += 1
        return minimise(*args, **kwargs)

    monkeypatch.setattr(DatasetVersion, "frame", counted_read)
    monkeypatch.setattr(datasets_models, "apply_minimisation", counted_minimise)
    return counts


def start(version, staff) -> Run:
    request = TrainingRequest(
        dataset_version=version.pk,
        algorithm="logistic_regression",
        identifiers="hash",  # student ids become keyed hashes: the costly part to repeat
        max_difference=0.5,
        min_group_size=20,
    )
    return start_training(version, request, staff)


def run_with(run: Run, after_split) -> str:
    """Like run_here, calling `after_split(split_step)` once the Split step has run."""
    me = engine.worker_id()
    for node_id in plan(run.version.graph).order:
        step = StepRun.objects.get(run=run, node_id=node_id)
        if step.status == StepRun.Status.QUEUED:
            engine.execute_step(run.pk, node_id, me=me)
        if node_id == "split":
            after_split(StepRun.objects.get(pk=step.pk))
    return engine.settle(run.pk)


def results(run: Run) -> dict:
    model = ModelVersion.objects.get(workflow_run=run)
    return {
        "validation": model.validation["metrics"],
        "bias": model.bias_report["checks"],
        "parity": model.bundle["parity"],
    }


def rebuilt(step: StepRun) -> list[str]:
    return [line["message"] for line in step.logs if line["message"].startswith("Rebuilding")]


def test_a_training_run_reads_and_hashes_the_dataset_once(frames_dir, version, staff, loads):
    run = start(version, staff)
    assert run_here(run) == "succeeded", {n: s.reason for n, s in steps_of(run).items()}
    assert loads == {"read": 1, "hash": 1}

    steps = steps_of(run)
    split = steps["split"].outputs
    for part in ("train", "test"):
        stored = split[part]["frame"]
        assert (frames_dir / f"{stored['sha256']}.parquet").exists()
        assert stored["rows"] == steps["split"].metrics[f"{part}_rows"]
    assert split["train"]["frame"] != split["test"]["frame"]
    assert all(not rebuilt(steps[n]) for n in READERS)
    # references only: the hash travels, the rows stay on disk, and they are the rows the
    # dataset version gives for that part
    assert set(split["test"]["frame"]) == {"sha256", "rows"}
    for part, ref in split.items():
        built, _ = datasets_models.load_reference(ref, pseudonym_key())
        assert frames.read(frames_dir, ref["frame"]["sha256"]).equals(built), part


def test_deleted_or_changed_parts_are_rebuilt_and_the_run_gives_the_same_results(
    frames_dir, version, staff, loads
):
    first = start(version, staff)
    assert run_here(first) == "succeeded"
    expected = results(first)
    loads.update(read=0, hash=0)

    def damage(split: StepRun) -> None:
        train, test = (split.outputs[p]["frame"]["sha256"] for p in ("train", "test"))
        (frames_dir / f"{train}.parquet").write_bytes(b"not the rows")  # changed
        (frames_dir / f"{test}.parquet").unlink()  # var wiped, or another machine

    second = start(version, staff)
    assert run_with(second, damage) == "succeeded", steps_of(second)
    assert results(second) == expected

    steps = steps_of(second)
    assert rebuilt(steps["train"]) == [
        f"Rebuilding the training rows from {version} (same split, same seed): the stored rows "
        f"{steps['split'].outputs['train']['frame']['sha256'][:12]}… do not match their hash"
    ]
    assert rebuilt(steps["validate"])[0].endswith("are missing")
    # rebuilt once, stored again: the steps after read the stored rows
    assert not rebuilt(steps["bias"]) and not rebuilt(steps["export"])
    assert loads == {"read": 3, "hash": 3}  # split, train's rebuild, validate's rebuild
    for part in ("train", "test"):  # the same rows again, under the same hash
        frames.read(frames_dir, steps["split"].outputs[part]["frame"]["sha256"])
    assert not any("rebuilt rows hash to" in line["message"] for line in steps["train"].logs)


def test_outputs_of_runs_from_before_stored_parts_still_work(frames_dir, version, staff, loads):
    first = start(version, staff)
    assert run_here(first) == "succeeded"
    expected = results(first)
    loads.update(read=0, hash=0)

    def as_before(split: StepRun) -> None:
        for part in ("train", "test"):
            split.outputs[part].pop("frame")
        split.save(update_fields=["outputs"])

    second = start(version, staff)
    assert run_with(second, as_before) == "succeeded", steps_of(second)
    assert results(second) == expected
    # every reader rebuilds its rows from the version, as runs did before
    assert loads == {"read": 5, "hash": 5}
    assert all(not rebuilt(s) for s in steps_of(second).values())


def test_a_run_goes_on_when_the_parts_cannot_be_stored(ml_stores, settings, version, staff, loads):
    settings.VAR_DIR = ml_stores / "not-a-folder"
    settings.VAR_DIR.write_text("var/frames/ cannot be made below a file")
    run = start(version, staff)
    assert run_here(run) == "succeeded", {n: s.reason for n, s in steps_of(run).items()}
    split = steps_of(run)["split"]
    assert "frame" not in split.outputs["train"] and "frame" not in split.outputs["test"]
    assert any(
        line["message"].startswith("Could not store the training rows") for line in split.logs
    )
    assert loads == {"read": 5, "hash": 5}  # each reader rebuilds its rows, as before
