"""Training time and memory at 10k, 100k and 1M generated rows.

Anchor: scikit-learn's own `Pipeline.fit` in one call. Ours: `edumlops.ml.training.fit`, which
reports progress (a random forest grown in chunks of trees with warm_start; boosting rounds
counted from its verbose output). Both fit the same pipeline on the same rows. Each case runs in
a fresh process; its resident memory is sampled every 5 ms during the fit ("at start" is the
prepared data already in memory). The random forest stops at 100k rows: 100 trees of depth 12
on 1M rows take longer on two cores than this whole benchmark is allowed to.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
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
    gc.collect()
    sampler = RssSampler()
    pipeline = build_pipeline(spec, algorithm, balanced=True, seed=0)
    stages = []
    start_mib = sampler.rss_mib()
    sampler.start()
    t = time.perf_counter()
    if mode == "sklearn":
        pipeline.fit(X, y)
    else:
        fit(pipeline, X, y, progress=lambda stage, fraction: stages.append(stage))
    seconds = time.perf_counter() - t
    sampler.stop()
    return {
        "seconds": seconds,
        "start_mib": start_mib,
        "peak_mib": sampler.peak,
        "stages": len(stages),
    }


class RssSampler(threading.Thread):
    """Resident memory of this process, read from /proc every 5 ms while the fit runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.running = True
        self.page = os.sysconf("SC_PAGE_SIZE")

    def rss_mib(self) -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page / 2**20

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss_mib())
            time.sleep(0.005)

    def stop(self) -> None:
        self.running = False
        self.join()
        self.peak = max(self.peak, self.rss_mib())


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
    print("fit time and resident memory per case, each in a fresh process")
    print()
    print(
        "| family | rows | sklearn Pipeline.fit s | ours (with progress) s | ratio ours/sklearn "
        "| RSS at start MiB | peak RSS in fit MiB sklearn / ours | progress reports |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for algorithm, sizes in CASES.items():
        for rows in sizes:
            anchor = run_case(algorithm, rows, "sklearn")
            ours = run_case(algorithm, rows, "ours")
            print(
                f"| {algorithm} | {rows:,} | {anchor['seconds']:.2f} | {ours['seconds']:.2f} "
                f"| {ours['seconds'] / anchor['seconds']:.2f} "
                f"| {anchor['start_mib']:,.0f} "
                f"| {anchor['peak_mib']:,.0f} / {ours['peak_mib']:,.0f} "
                f"| {ours['stages']} |",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        print(json.dumps(one_case(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        main()
