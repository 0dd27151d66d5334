"""The enrollment forecast's rolling-origin backtest: accuracy and time of the seasonal naive
(anchor: the count a school year earlier) against ours — exponential smoothing (statsmodels
ETS(A,Ad,A) per series) and one gradient-boosted model on lags pooled across series — on the
generator's district: 20 schools (each with the grades it serves: elementary K-5, middle 6-8,
high 9-12, academies K-12), ten years of three terms, a school opening two years before the end
and a boundary change in the middle year.

One origin per registration cycle over the last 6 cycles, each forecasting the next school year
(3 terms); per school and grade, and per school total. MAPE skips actual counts of 0; MASE is
scaled by each series' in-sample seasonal-naive error (Hyndman & Koehler 2006); coverage is the
share of actual counts inside the 80% interval: the model's own, and calibrated as Train
enrollment forecast does (each origin on the 6 terms before it only, a split-conformal factor per
step ahead). "seconds" is the fit and forecast time over all
origins (one thread); the ratio columns are ours / the seasonal naive.

`--quick`: 6 schools and 3 origins, to check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


CALIBRATE = 6  # past terms each origin's intervals are calibrated on, as Train enrollment forecast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 schools, 3 origins")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from edumlops.ml.enrollment_synth import simulate_enrollment
    from edumlops.ml.forecast import LABELS, backtest, forecast_gate

    schools, origins, horizon, level = (6, 3, 3, 0.8) if args.quick else (20, 6, 3, 0.8)
    history = simulate_enrollment(schools, seed=0)
    n_series = history.groupby(["school", "grade"]).ngroups
    print(
        f"{schools} schools, {n_series} school-grade series, {history['period'].nunique()} "
        f"terms ({history['year'].min()}-{history['year'].max()}, 3 a year); {origins} "
        f"origins, horizon {horizon} terms, {level:.0%} intervals"
    )
    print()
    print(
        "| series | method | MAPE | MASE | MASE ours/baseline | coverage, model's own "
        "| coverage, calibrated | fallbacks | seconds | time ours/baseline | gate |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    notes = []
    for by, label in (("grade", f"school x grade ({n_series})"), ("school", f"school ({schools})")):
        clock = time.perf_counter()
        result = backtest(
            history, origins=origins, horizon=horizon, level=level, by=by, calibrate=CALIBRATE
        )
        wall = time.perf_counter() - clock
        base_seconds = result.seconds["seasonal_naive"]
        for method in result.methods:
            row = result.metrics(method)
            seconds = result.seconds[method]
            ours = method != "seasonal_naive"
            gate = forecast_gate(result, method=method) if ours else None
            print(
                f"| {label} | {LABELS[method]}{'' if ours else ' (anchor)'} "
                f"| {row['mape']:.2%} | {row['mase']:.3f} "
                f"| {row['relative_mase']:.2f} | {row['raw_coverage']:.0%} "
                f"| {row['coverage']:.0%} "
                f"| {int(row['fallbacks'])} | {seconds:.3f} "
                f"| {seconds / base_seconds:,.0f}x | "
                + ("—" if gate is None else ("pass" if gate.passed else "fail"))
                + " |",
                flush=True,
            )
        notes.append(
            f"- by {by}: whole backtest {wall:.1f} s (seconds per method include the "
            f"{CALIBRATE} extra origins the calibration needs); " + " ".join(result.notes)
        )
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
