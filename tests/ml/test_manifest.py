"""The bundle manifest (edumlops.ml.manifest): one type written by export and read by serving,
the edge agent and the tests; its JSON keeps the keys bundles have always had."""

from __future__ import annotations

import json

import pytest

from edumlops.ml.bundle_files import manifest_bytes
from edumlops.ml.manifest import Manifest, ManifestError, ModelInfo

# manifest.json of a bundle the Export ONNX block wrote before Manifest existed (dict literal)
OLD_EXPORT = """{
  "bias_outcome": "pass",
  "created_at": "2026-11-20T09:15:02.123456+00:00",
  "dataset_sha256": "3f5a0c9e",
  "drift_reference": {
    "absences": {"categories": [], "counts": [3, 5, 2], "edges": [1.0, 4.0], "kind": "numeric",
                 "name": "absences"}
  },
  "explain": {"categorical": {"grade": {"10": 0.2, "9": -0.1}},
              "numeric": {"absences": [2.0, 3.1, 1.7, 0.8]}},
  "feature_types": {"absences": "float", "grade": "string"},
  "features": {"categorical": ["grade"], "numeric": ["absences"]},
  "files": {"model.onnx": "ab12"},
  "format": 1,
  "metrics": {"auc": 0.81},
  "model": {"algorithm": "logistic_regression", "model_version_id": 12, "name": "at-risk",
            "run_id": "9d0e", "version": "3"},
  "parity_max_abs_diff": 1.2e-07,
  "signing_key_id": "k-1",
  "thresholds": {"decision": 0.42}
}"""


def _old() -> dict:
    return json.loads(OLD_EXPORT)


def test_an_old_export_reads_and_writes_back_to_the_same_bytes():
    old = _old()
    manifest = Manifest.from_dict(old)
    assert manifest.model == ModelInfo("at-risk", "3", "logistic_regression", 12, "9d0e")
    assert manifest.features == ["absences", "grade"]
    assert manifest.thresholds == {"decision": 0.42}
    assert manifest.files == {"model.onnx": "ab12"} and manifest.format == 1
    assert manifest_bytes(manifest.to_dict()) == manifest_bytes(old)


def test_a_minimal_old_manifest_reads_and_keeps_its_keys():
    # the first bundles: no model_version_id, no algorithm, no export report
    old = {"model": {"name": "m", "version": "1"}, "features": {"numeric": ["a"]}}
    manifest = Manifest.from_dict(old)
    assert manifest.model.model_version_id is None and manifest.categorical == []
    assert manifest.to_dict() == {
        "model": {"name": "m", "version": "1"},
        "features": {"numeric": ["a"], "categorical": []},
    }


def test_keys_it_does_not_know_are_kept():
    old = {**_old(), "added_later": {"x": 1}}
    assert Manifest.from_dict(old).to_dict() == old


def test_a_built_manifest_round_trips():
    manifest = Manifest(
        model=ModelInfo("at-risk", "2", "random_forest", 7, "r1"),
        numeric=["absences"],
        categorical=["grade"],
        thresholds={"decision": 0.5},
        drift_reference={"absences": {"kind": "numeric", "edges": [1.0]}},
    )
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("model"), "manifest.json lacks model."),
        (lambda m: m.pop("features"), "manifest.json lacks features."),
        (lambda m: m["model"].pop("name"), "manifest.json lacks model.name."),
        (lambda m: m["model"].pop("version"), "manifest.json lacks model.version."),
        (lambda m: m["model"].update(version=3), "model.version must be text, got int"),
        (lambda m: m["model"].update(model_version_id="12"), "model.model_version_id must be"),
        (lambda m: m.update(features=["a"]), "features must be an object, got list"),
        (lambda m: m["features"].update(numeric="a"), "features.numeric must be a list"),
        (lambda m: m["thresholds"].update(decision="high"), "thresholds.decision must be a"),
        (lambda m: m.update(drift_reference=[1]), "drift_reference must be an object"),
        (lambda m: m.update(signing_key_id=5), "signing_key_id must be text, got int"),
    ],
)
def test_a_missing_or_bad_field_names_itself(change, message):
    data = _old()
    change(data)
    with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
        Manifest.from_dict(data)


def test_the_module_imports_nothing_heavy():
    # the edge agent reads manifests with this module: standard library only
    import ast
    from pathlib import Path

    import edumlops.ml.manifest as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        a.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
    }
    assert imported <= {"__future__", "dataclasses", "typing"}
