"""An ONNX Runtime session over a bundle's model, with numpy and onnxruntime only: what the
central predict API and the edge agent both run."""

from __future__ import annotations

import numpy as np

from edumlops.ml import onnx_graph
from edumlops.ml.bundle_files import BundleError


class OrtModel:
    """One session; `predict_feed` takes one (n, 1) array per feature and gives the positive
    class's probability per row."""

    def __init__(self, model_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"ONNX Runtime cannot load the model: {exc}") from None
        self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.categories = onehot_categories(model_bytes, self.inputs)
        outputs = [o.name for o in self.session.get_outputs()]
        self._proba = next((o for o in outputs if "prob" in o), outputs[-1])

    @property
    def feature_names(self) -> list[str]:
        return list(self.inputs)

    def predict_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        (proba,) = self.session.run([self._proba], feed)
        return np.asarray(proba)[:, 1]


def onehot_categories(model_bytes: bytes, inputs: dict[str, str]) -> dict[str, frozenset[str]]:
    """The categories each string input's one-hot encoder learnt, read off the ONNX graph (its
    `OneHotEncoder` nodes' `cats_strings`): exact for every kind of model. Read from the model's
    bytes (edumlops.ml.onnx_graph), without importing `onnx`; empty if they cannot be read, so
    callers fall back to what they know."""
    return onnx_graph.onehot_categories(model_bytes, inputs)
