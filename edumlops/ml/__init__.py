"""Pure-Python ML engines (no Django import): datasets, synthetic data, training, evaluation,
fairness, ONNX bundles, signing and MLflow tracking. Blocks and pages call these; they never call
back."""
