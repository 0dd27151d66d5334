"""An ONNX Runtime session over a bundle's model, with numpy and onnxruntime only: what the
central predict API and the edge agent both run."""

from __future__ import annotations

import numpy as np

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
        outputs = [o.name for o in self.session.get_outputs()]
        self._proba = next((o for o in outputs if "prob" in o), outputs[-1])

    @property
    def feature_names(self) -> list[str]:
        return list(self.inputs)

    def predict_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        (proba,) = self.session.run([self._proba], feed)
        return np.asarray(proba)[:, 1]
