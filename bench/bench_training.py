"""Training time and peak memory at 10k, 100k and 1M generated rows.

Anchor: scikit-learn's own `Pipeline.fit` in one call. Ours: `edumlops.ml.training.fit`, which
grows tree ensembles in chunks (warm_start) so the worker can report progress. Both fit the same
pipeline on the same rows; each case runs in a fresh process so that its peak resident memory
(ru_maxrss, data included) is its own. The random forest stops at 100k rows: 100 trees of depth
12 on 1M rows take longer on two cores than this whole benchmark is allowed to.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = (10_000, 100_000, 1_000_000)
CASES = {
    "logistic_regression": SIZES,
    "hist_gradient_boosting": SIZES,
    "random_forest": SIZES[:2],
}
EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}


def one_case(algorithm: str, rows: int, mode: str) -> dict:
    from edumlops.ml.synth import generate_district
    from edumlops.ml.training import (
        binary_target,
        build_pipeline,
        fit,
        infer_features,
        prepare_frame,
    )

    warnings.simplefilter("ignore")
    frame = generate_district(rows, seed=0)
    spec = infer_features(frame, exclude=EXCLUDE | {"term"})
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    del frame
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pipeline = build_pipeline(spec, algorithm, balanced=True, seed=0)
    stages = []
    t = time.perf_counter()
    if mode == "sklearn":
        pipeline.fit(X, y)
    else:
        fit(pipeline, X, y, progress=lambda stage, fraction: stages.append(stage))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_mib": peak / 1024,
        "fit_mib": (peak - before) / 1024,
        "stages": len(stages),
    }


def run_case(algorithm: str, rows: int, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", algorithm, str(rows), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("fit time and peak RSS (data included) per case, each in a fresh process")
    print()
    print(
        "| family | rows | sklearn Pipeline.fit s | ours (with progress) s | ratio ours/sklearn "
        "| peak MiB sklearn / ours | progress reports |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for algorithm, sizes in CASES.items():
        for rows in sizes:
            anchor = run_case(algorithm, rows, "sklearn")
            ours = run_case(algorithm, rows, "ours")
            print(
                f"| {algorithm} | {rows:,} | {anchor['seconds']:.2f} | {ours['seconds']:.2f} "
                f"| {ours['seconds'] / anchor['seconds']:.2f} "
                f"| {anchor['peak_mib']:,.0f} / {ours['peak_mib']:,.0f} | {ours['stages']} |",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        print(json.dumps(one_case(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        main()
