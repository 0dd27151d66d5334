"""What the agent reads without the heavy libraries, checked against the code it replaces: the
one-hot categories read off the ONNX graph's bytes equal those the `onnx` package reads
(edumlops.ml.runtime.onehot_categories), for a linear model and for trees; and the drift bins a
request adds to the telemetry counts equal the drift module's histograms, row by row or with
numpy."""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime as ort
import pytest

from edumlops.edge.models import VECTOR_ROWS, Bins, EdgeOrtModel
from edumlops.ml import drift, onnx_graph
from edumlops.ml.runtime import OrtModel, onehot_categories
from tests.conftest import ROOT
from tests.edge.bundles import _trained, make_bundle, new_key, request_rows


def by_the_onnx_package(model_bytes: bytes, inputs: dict[str, str]) -> dict[str, frozenset[str]]:
    """The categories as the `onnx` package reads them off the graph (what serving did before)."""
    import onnx

    out: dict[str, frozenset[str]] = {}
    for node in onnx.load_from_string(model_bytes).graph.node:
        if node.op_type != "OneHotEncoder" or not node.input or node.input[0] not in inputs:
            continue
        for attribute in node.attribute:
            if attribute.name == "cats_strings":
                out[node.input[0]] = frozenset(s.decode() for s in attribute.strings)
    return out


def _inputs(model_bytes: bytes) -> dict[str, str]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return {i.name: i.type for i in session.get_inputs()}


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest"])
def test_the_wire_reader_finds_what_the_onnx_package_finds(algorithm):
    model_bytes = _trained(algorithm, 0)[0]
    inputs = _inputs(model_bytes)
    ours = onnx_graph.onehot_categories(model_bytes, inputs)
    assert ours == by_the_onnx_package(model_bytes, inputs)
    assert ours == onehot_categories(model_bytes, inputs)  # what the shared runtime uses
    assert ours and all(ours.values())  # the synthetic district has categorical features


def test_only_the_inputs_asked_for_are_listed():
    model_bytes = _trained("logistic_regression", 0)[0]
    inputs = _inputs(model_bytes)
    name = sorted(onnx_graph.onehot_categories(model_bytes, inputs))[0]
    fewer = {k: v for k, v in inputs.items() if k != name}
    assert name not in onnx_graph.onehot_categories(model_bytes, fewer)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff" * 40, b"\x3a\x05abc", _trained("logistic_regression", 0)[0][:-7]],
    ids=["empty", "bad-varint", "truncated-field", "truncated-model"],
)
def test_bytes_that_are_not_a_model_give_no_categories(garbage):
    assert onnx_graph.onehot_categories(garbage, {"school": "tensor(string)"}) == {}


def test_the_edge_runner_serves_as_the_shared_runner(tmp_path):
    make_bundle(tmp_path / "b", new_key())
    model_bytes = (tmp_path / "b" / "model.onnx").read_bytes()
    ours, shared = EdgeOrtModel(model_bytes), OrtModel(model_bytes)
    assert ours.categories == shared.categories and ours.feature_names == shared.feature_names
    assert ours._proba == shared._proba


def test_loading_a_bundle_imports_no_onnx(tmp_path):
    make_bundle(tmp_path / "b", new_key())
    code = (
        "import sys\n"
        "from edumlops.edge.models import EdgeOrtModel\n"
        f"EdgeOrtModel(open({str(tmp_path / 'b' / 'model.onnx')!r}, 'rb').read())\n"
        "print('onnx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- the drift bins of the telemetry -----------------------------------------------------------
def _reference():
    _, _, reference, _ = _trained("logistic_regression", 0)
    return reference


def _awkward_rows(n: int) -> tuple[list[dict], list[float]]:
    reference = _reference()
    rows = request_rows(max(n, 6), seed=5)[:n]
    numeric = next(k for k, r in reference.items() if r["kind"] == "numeric" and k in rows[0])
    categorical = next(k for k, r in reference.items() if r["kind"] == "categorical")
    awkward = [
        (numeric, None),  # missing
        (numeric, reference[numeric]["edges"][2]),  # exactly on an edge
        (numeric, -1e9),  # below every edge
        (categorical, "a school nobody has heard of"),  # "other"
        (categorical, None),  # missing
    ]
    for row, (name, value) in zip(rows, awkward, strict=False):
        row[name] = value
    probabilities = [0.0, 0.5, 1.0, *(0.013 * i for i in range(max(0, n - 3)))][:n]
    return rows, probabilities


@pytest.mark.parametrize("n", [1, 5, VECTOR_ROWS - 1, VECTOR_ROWS, 80])
def test_the_counts_a_request_adds_are_the_drift_modules_bins(n):
    reference = _reference()
    rows, probabilities = _awkward_rows(n)
    totals: dict[str, list[int]] = {}
    Bins(reference).add(totals, rows, probabilities)
    Bins(reference).add(totals, rows, probabilities)  # a second request adds to the same totals
    assert set(totals) == set(reference)
    for name, ref in reference.items():
        values = probabilities if name == "__prediction__" else [r.get(name) for r in rows]
        expected = drift.FeatureReference.from_dict(ref).histogram(values)
        assert totals[name] == (2 * expected).tolist(), name


def test_small_and_large_requests_count_alike():
    reference = _reference()
    rows, probabilities = _awkward_rows(3 * VECTOR_ROWS)
    one_by_one: dict[str, list[int]] = {}
    for row, p in zip(rows, probabilities, strict=True):
        Bins(reference).add(one_by_one, [row], [p])
    at_once: dict[str, list[int]] = {}
    Bins(reference).add(at_once, rows, probabilities)
    assert one_by_one == at_once == Bins(reference).histograms(rows, probabilities)
    assert json.dumps(at_once)  # plain ints: what the encrypted queue stores


@pytest.mark.parametrize("values", [[3.0], [2.0, 1.0], [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.25]])
def test_the_device_latency_percentiles_are_numpys(values):
    import numpy as np

    from edumlops.edge.models import percentile

    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)
