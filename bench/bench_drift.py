"""Drift at 100k and 1M rows x 25 columns (20 numeric, 5 categorical; 3 columns shifted): ours
(`edumlops.ml.drift`: reference bins built once, histograms, PSI/JS with KS/chi-square and a
Benjamini-Hochberg correction) against Evidently's `DataDriftPreset` with its defaults, on the
same data in one run. Each case runs in a fresh process: time and peak memory (ru_maxrss, data
included) are its own. Also says whether both flag the same columns."""

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

SHIFTED = {"num_0", "num_1", "cat_0"}


def data(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def frame(shift: bool):
        cols = {}
        for i in range(20):
            mean = 0.5 if shift and f"num_{i}" in SHIFTED else 0.0
            cols[f"num_{i}"] = rng.normal(mean, 1.0, rows)
        for i in range(5):
            p = [0.5, 0.3, 0.2] if not (shift and f"cat_{i}" in SHIFTED) else [0.3, 0.3, 0.4]
            cols[f"cat_{i}"] = rng.choice(["a", "b", "c"], rows, p=p)
        return pd.DataFrame(cols)

    return frame(False), frame(True)


def ours(rows: int) -> dict:
    import scipy.spatial.distance  # noqa: F401  (imported before the clock, like Evidently)
    import scipy.stats  # noqa: F401

    from edumlops.ml import drift

    reference, current = data(rows)
    start = time.perf_counter()
    numeric = [f"num_{i}" for i in range(20)]
    categorical = [f"cat_{i}" for i in range(5)]
    ref = drift.build_reference(reference, numeric, categorical)
    report = drift.detect(ref, current, baseline=reference, n_boot=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "flagged": sorted(report.drifted)}


def evidently(rows: int) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    warnings.simplefilter("ignore")
    reference, current = data(rows)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    flagged = []
    for metric in snapshot.dict()["metrics"]:
        name = metric.get("metric_name", "")
        value = metric.get("value")
        if name.startswith("ValueDrift(") and isinstance(value, float):
            column = name.split("column=")[1].split(",")[0]
            threshold = float(name.split("threshold=")[1].rstrip(")").split(",")[0])
            method = name.split("method=")[1].split(",")[0]
            drifted = value < threshold if "p_value" in method else value >= threshold
            if drifted:
                flagged.append(column)
    return {"seconds": seconds, "flagged": sorted(flagged)}


def run(kind: str, rows: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", kind, str(rows)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("25 columns (20 numeric, 5 categorical), 3 shifted (num_0, num_1 mean +0.5 sd; cat_0)")
    print()
    print(
        "| rows each side | Evidently s | ours s | speed-up | Evidently peak MiB | ours peak MiB "
        "| Evidently flags | ours flags | same verdicts |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    for rows in (100_000, 1_000_000):
        anchor, mine = run("evidently", rows), run("ours", rows)
        print(
            f"| {rows:,} | {anchor['seconds']:.1f} | {mine['seconds']:.2f} "
            f"| {anchor['seconds'] / mine['seconds']:.0f}x | {anchor['peak_mib']:,.0f} "
            f"| {mine['peak_mib']:,.0f} | {', '.join(anchor['flagged'])} "
            f"| {', '.join(mine['flagged'])} | {anchor['flagged'] == mine['flagged']} |",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        result = (ours if sys.argv[2] == "ours" else evidently)(int(sys.argv[3]))
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
    else:
        main()
