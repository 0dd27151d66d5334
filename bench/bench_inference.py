"""Inference per model family: scikit-learn `predict_proba` vs ONNX Runtime on the same rows.

Anchor (FACTS.md): scikit-learn predict_proba. Each family is trained on 10,000 generated rows
(the product's own pipeline: ColumnTransformer + classifier), exported with the product's
`to_onnx`, and both are timed on the same held-out rows in this one run:

- single row: p50 / p99 of 400 calls, one row each (scikit-learn gets a one-row DataFrame;
  ONNX Runtime is timed twice: the raw `session.run` on ready arrays, and the product's
  `OnnxModel.predict_proba` that builds those arrays from the same one-row DataFrame);
- batch: rows per second on 10,000 rows in one call.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edumlops.ml import onnx_bundle  # noqa: E402
from edumlops.ml.synth import generate_district  # noqa: E402
from edumlops.ml.training import (  # noqa: E402
    ALGORITHMS,
    binary_target,
    build_pipeline,
    fit,
    infer_features,
    prepare_frame,
)

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
SINGLE = 400


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def timed(fn, rows: list) -> list[float]:
    out = []
    for row in rows:
        t = time.perf_counter()
        fn(row)
        out.append((time.perf_counter() - t) * 1e6)
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    frame = generate_district(20_000, seed=11)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    train, test = X.iloc[:10_000], X.iloc[10_000:]
    singles = [test.iloc[[i]] for i in range(SINGLE)]
    print(
        f"{len(spec.columns)} features ({len(spec.numeric)} numeric, {len(spec.categorical)} "
        f"categorical); single row: p50/p99 of {SINGLE} calls in µs; batch: 10,000 rows"
    )
    print()
    print(
        "| family | sklearn p50 / p99 µs | ORT session.run p50 / p99 µs | OnnxModel p50 / p99 µs "
        "| single-row ratio (sklearn / OnnxModel p50) | sklearn batch rows/s "
        "| ORT batch rows/s | batch ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for algorithm, label in ALGORITHMS.items():
        pipeline = fit(build_pipeline(spec, algorithm, balanced=True, seed=0), train, y[:10_000])
        model = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, spec))
        assert onnx_bundle.parity(pipeline, model, test).ok
        feeds = [model.feed(row) for row in singles]
        output = model._proba
        for row, feed in zip(singles[:20], feeds[:20], strict=True):  # warm up both
            pipeline.predict_proba(row)
            model.session.run([output], feed)
        sk = percentiles(timed(pipeline.predict_proba, singles))
        raw = percentiles(timed(lambda f, m=model, o=output: m.session.run([o], f), feeds))
        ours = percentiles(timed(model.predict_proba, singles))

        def rate(fn) -> float:
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                fn(test)
                best = min(best, time.perf_counter() - t)
            return len(test) / best

        sk_rate, ort_rate = rate(pipeline.predict_proba), rate(model.predict_proba)
        print(
            f"| {label} | {sk[0]:,.0f} / {sk[1]:,.0f} | {raw[0]:,.1f} / {raw[1]:,.1f} "
            f"| {ours[0]:,.0f} / {ours[1]:,.0f} | {sk[0] / ours[0]:.1f}× "
            f"| {sk_rate:,.0f} | {ort_rate:,.0f} | {ort_rate / sk_rate:.1f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
