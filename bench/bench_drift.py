"""Drift at 100k and 1M rows a side x 25 columns (20 numeric, 5 categorical): ours
(`edumlops.ml.drift`: reference bins built once, histograms, PSI/JS, and for numeric columns
the normed Wasserstein distance, gated by KS/chi-square with a Benjamini-Hochberg correction)
against Evidently's `DataDriftPreset` with its defaults, on the same data in one run. Six
columns change, in the ways drift happens: a mean shift, a variance change, a shift of the tail
(the top 5% of rows, which stay in the reference's top decile bin: only a distance sees it), a
count whose mean grows, a re-weighted category and a new category; the other 19 columns keep
their distribution (normal, skewed, counts with ties, rates, missing values).

Each case runs in a fresh process: time and peak memory (ru_maxrss, data included) are its own.
"data alone" is the peak of a process that only builds the two frames. The bench also says
whether both flag the same columns and, where they differ, shows both tools' numbers."""

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

NUMERIC = [f"num_{i}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
CHANGES = {
    "num_0": "mean +0.5 sd",
    "num_1": "sd x1.5",
    "num_2": "top 5% of rows +3 sd",
    "num_3": "count, mean 6 -> 7",
    "cat_0": "re-weighted (a 50% -> 35%, c 20% -> 35%)",
    "cat_1": "new category in 8% of rows",
}


def data(rows: int, seed: int = 0):
    """The reference and the current frame. Numbers are written into one float64 block per
    frame and categories are shared str objects, so the data costs what a loaded frame costs
    (8 bytes a cell) and nothing is copied on the way."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def categories(labels: list, p: list) -> np.ndarray:
        return np.array(labels, dtype=object)[rng.choice(len(labels), rows, p=p)]

    def frame(changed: bool) -> pd.DataFrame:
        block = np.empty((rows, len(NUMERIC)), order="F")
        for i, col in enumerate(block.T):
            if i <= 2 or i >= 16:  # normal
                rng.standard_normal(out=col)
                if changed and i == 0:
                    col += 0.5
                if changed and i == 1:
                    col *= 1.5
                if changed and i == 2:
                    col[col > 1.6449] += 3.0  # above the 95th percentile: the top 5%
                if i == 19:
                    col[rng.random(rows) < 0.02] = np.nan
            elif i == 3 or 8 <= i <= 11:  # counts (logins a week): many ties
                col[:] = rng.poisson(7.0 if changed and i == 3 else 6.0 if i == 3 else 4.0, rows)
            elif 4 <= i <= 7:  # skewed (minutes online)
                rng.standard_normal(out=col)
                np.exp(col * 0.5 + 1.0, out=col)
            else:  # rates in [0, 1)
                rng.random(out=col)
        out = pd.DataFrame(block, columns=NUMERIC, copy=False)
        weights = [0.35, 0.3, 0.35] if changed else [0.5, 0.3, 0.2]
        out["cat_0"] = categories(["a", "b", "c"], weights)
        if changed:
            out["cat_1"] = categories(["x", "y", "z", "new"], [0.46, 0.28, 0.18, 0.08])
        else:
            out["cat_1"] = categories(["x", "y", "z"], [0.5, 0.3, 0.2])
        out["cat_2"] = categories([f"school {k}" for k in range(12)], [1 / 12] * 12)
        out["cat_3"] = categories(["yes", "no"], [0.7, 0.3])
        out["cat_4"] = categories(
            ["grade 9", "grade 10", "grade 11", "grade 12", None], [0.25] * 3 + [0.24, 0.01]
        )
        return out

    return frame(False), frame(True)


def alone(rows: int) -> dict:
    reference, current = data(rows)
    return {"seconds": 0.0, "flagged": [], "scores": {}}


def ours(rows: int) -> dict:
    import scipy.spatial.distance  # noqa: F401  (imported before the clock, like Evidently)
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401

    from edumlops.ml import drift

    reference, current = data(rows)
    start = time.perf_counter()
    ref = drift.build_reference(reference, NUMERIC, CATEGORICAL)
    report = drift.detect(ref, current, baseline=reference, n_boot=0)
    seconds = time.perf_counter() - start
    scores = {
        f.name: f"PSI {f.psi:.3f}, JS {f.js:.3f}"
        + (f", Wasserstein {f.wasserstein:.3f}" if f.wasserstein is not None else "")
        + f", corrected p {f.adjusted_p:.2g}"
        for f in report.features
    }
    return {"seconds": seconds, "flagged": sorted(report.drifted), "scores": scores}


def evidently(rows: int) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    warnings.simplefilter("ignore")
    reference, current = data(rows)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    flagged, scores = [], {}
    for metric in snapshot.dict()["metrics"]:
        name = metric.get("metric_name", "")
        value = metric.get("value")
        if name.startswith("ValueDrift(") and isinstance(value, float):
            column = name.split("column=")[1].split(",")[0]
            threshold = float(name.split("threshold=")[1].rstrip(")").split(",")[0])
            method = name.split("method=")[1].split(",")[0]
            drifted = value < threshold if "p_value" in method else value >= threshold
            scores[column] = f"{method} {value:.3f} (drift at {threshold:g})"
            if drifted:
                flagged.append(column)
    return {"seconds": seconds, "flagged": sorted(flagged), "scores": scores}


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
    changed = "; ".join(f"{k} {v}" for k, v in CHANGES.items())
    print(f"25 columns (20 numeric, 5 categorical); changed: {changed}; the rest unchanged")
    print()
    print(
        "| rows a side | Evidently s | ours s | speed-up | Evidently peak MiB | ours peak MiB "
        "| memory ours/Evidently | data alone MiB | Evidently flags | ours flags "
        "| same verdicts |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
    notes = []
    for rows in (100_000, 1_000_000):
        anchor, mine, base = run("evidently", rows), run("ours", rows), run("alone", rows)
        print(
            f"| {rows:,} | {anchor['seconds']:.1f} | {mine['seconds']:.2f} "
            f"| {anchor['seconds'] / mine['seconds']:.0f}x | {anchor['peak_mib']:,.0f} "
            f"| {mine['peak_mib']:,.0f} | {mine['peak_mib'] / anchor['peak_mib']:.2f} "
            f"| {base['peak_mib']:,.0f} | {', '.join(anchor['flagged'])} "
            f"| {', '.join(mine['flagged'])} | {anchor['flagged'] == mine['flagged']} |",
            flush=True,
        )
        for column in sorted(set(anchor["flagged"]) ^ set(mine["flagged"])):
            who = "Evidently only" if column in anchor["flagged"] else "ours only"
            notes.append(
                f"- {rows:,} rows, {column} ({CHANGES.get(column, 'unchanged')}), flagged by "
                f"{who}: Evidently {anchor['scores'].get(column)}; ours {mine['scores'][column]}"
            )
    if notes:
        print("\nColumns the two flag differently:")
        print("\n".join(notes))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        case = {"ours": ours, "evidently": evidently, "alone": alone}[sys.argv[2]]
        result = case(int(sys.argv[3]))
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
    else:
        main()
