"""ONNX export through ONNX Runtime (no mock) and signed bundles: parity per algorithm, and a
bundle refused when one byte changes, when the signature comes from another key, or a file is
missing."""

from __future__ import annotations

import json
import os
import stat

import pytest

from edumlops.ml import onnx_bundle, signing
from edumlops.ml.synth import generate_district
from edumlops.ml.training import binary_target, build_pipeline, fit, infer_features, prepare_frame

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}


def trained(algorithm):
    frame = generate_district(3000, seed=6)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = fit(build_pipeline(spec, algorithm, balanced=True, seed=0), X, y)
    return pipeline, spec, X


@pytest.mark.parametrize(
    "algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting"]
)
def test_onnx_runtime_matches_scikit_learn(algorithm):
    pipeline, spec, X = trained(algorithm)
    model = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, spec))
    assert sorted(model.feature_names) == sorted(spec.columns)
    result = onnx_bundle.parity(pipeline, model, X)
    assert result.ok, result.describe()
    assert result.share_within == 1.0 and result.max_abs_diff < 1e-4


def test_parity_says_no_when_the_model_differs():
    pipeline, spec, X = trained("logistic_regression")
    other, _, _ = trained("random_forest")
    model = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(other, spec))
    result = onnx_bundle.parity(pipeline, model, X)
    assert not result.ok and result.max_abs_diff > 0.01


@pytest.fixture
def bundle(tmp_path):
    pipeline, spec, X = trained("logistic_regression")
    key = signing.load_or_create_private_key(tmp_path / "keys" / "k.pem")
    manifest = {"model": {"name": "m", "version": "1"}, "features": spec.to_dict()}
    final = onnx_bundle.write_bundle(
        tmp_path / "bundle", onnx_bundle.to_onnx(pipeline, spec), manifest, key
    )
    return tmp_path / "bundle", key, final, X


def test_a_signed_bundle_loads_and_predicts(bundle):
    path, key, final, X = bundle
    assert sorted(os.listdir(path)) == ["manifest.json", "manifest.sig", "model.onnx"]
    assert final["signing_key_id"] == signing.key_id(key.public_key())
    manifest, model = onnx_bundle.load_bundle(path, key.public_key())
    assert manifest["files"]["model.onnx"] == onnx_bundle.sha256_file(path / "model.onnx")
    assert model.predict_proba(X.head(5)).shape == (5,)


def test_one_changed_byte_in_the_model_is_refused(bundle):
    path, key, _, _ = bundle
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(onnx_bundle.BundleError, match="model.onnx does not match its SHA-256"):
        onnx_bundle.load_bundle(path, key.public_key())


def test_an_edited_manifest_is_refused(bundle):
    path, key, _, _ = bundle
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["thresholds"] = {"decision": 0.01}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(onnx_bundle.BundleError, match="signature does not match"):
        onnx_bundle.verify_bundle(path, key.public_key())


def test_a_bundle_signed_with_another_key_is_refused(bundle, tmp_path):
    path, _, _, _ = bundle
    stranger = signing.load_or_create_private_key(tmp_path / "other.pem")
    with pytest.raises(onnx_bundle.BundleError, match="another district's key"):
        onnx_bundle.verify_bundle(path, stranger.public_key())


def test_a_missing_file_is_named(bundle):
    path, key, _, _ = bundle
    (path / "model.onnx").unlink()
    with pytest.raises(onnx_bundle.BundleError, match="model.onnx is missing"):
        onnx_bundle.verify_bundle(path, key.public_key())


def test_bundles_are_never_overwritten(bundle):
    path, key, _, _ = bundle
    with pytest.raises(onnx_bundle.BundleError, match="never overwritten"):
        onnx_bundle.write_bundle(path, b"x", {}, key)


def test_the_private_key_is_created_once_and_private(tmp_path):
    path = tmp_path / "keys" / "k.pem"
    first = signing.load_or_create_private_key(path)
    again = signing.load_or_create_private_key(path)
    assert signing.key_id(first.public_key()) == signing.key_id(again.public_key())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = signing.public_key_pem(first.public_key())
    assert signing.key_id(signing.load_public_key(pem)) == signing.key_id(first.public_key())
