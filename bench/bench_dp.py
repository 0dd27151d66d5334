"""The price of differential privacy: accuracy, AUC and the bias gate's worst gap of the private
models at ε = 0.5, 1, 4 and 8, against the non-private model of the same family trained on the
same split.

Data: a generated district (edumlops.ml.synth, 20,000 student-term rows; the sensitive
attributes are not features), split 75/25 stratified once. Both families use the private
preprocessing (numbers clipped to bounds and scaled to [-1, 1], categories one-hot), with the
bounds read from the training rows — as when a user gives none. The non-private row is fitted
once; each private row is the mean (± standard deviation) over 5 seeds of the mechanism's noise.
The bias gate is the Train page's default: false-negative rate (missed at-risk students) across
SES, English learner, disability and sex and their pairs, max difference 0.1, groups of at least
30; "worst gap" is the largest difference any check measured, "gate" how many of the seeds'
models it passed / failed / left inconclusive.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = 20_000
EPSILONS = (0.5, 1.0, 4.0, 8.0)
SEEDS = 5
SENSITIVE = ["ses", "english_learner", "disability", "sex"]
EXCLUDE = {"at_risk", "student_id", "teacher_note", "term", "term_start", *SENSITIVE}


def scores(pipeline, X, y, sensitive) -> dict:
    from edumlops.ml.evaluation import evaluate
    from edumlops.ml.fairness import BiasRule, bias_report

    proba = pipeline.predict_proba(X)[:, 1]
    metrics = evaluate(y, proba, threshold=0.5)
    report = bias_report(
        y,
        (proba >= 0.5).astype(int),
        sensitive,
        [BiasRule("false_negative_rate", "max_difference", 0.1)],
        min_group_size=30,
        intersections=True,
        n_boot=100,
    )
    gaps = [c.value for c in report.checks if c.value is not None]
    return {
        "accuracy": metrics["accuracy"],
        "auc": metrics["auc"],
        "gap": max(gaps) if gaps else float("nan"),
        "gate": report.outcome,
    }


def main() -> None:
    from sklearn.model_selection import train_test_split

    from edumlops.ml import privacy
    from edumlops.ml.synth import generate_district
    from edumlops.ml.training import binary_target, infer_features, prepare_frame

    warnings.simplefilter("ignore")
    frame = generate_district(ROWS, seed=0)
    spec = infer_features(frame, exclude=EXCLUDE)
    y_all = binary_target(frame["at_risk"], ["yes"])
    train, test = train_test_split(frame, test_size=0.25, stratify=y_all, random_state=0)
    X, y = prepare_frame(train, spec), binary_target(train["at_risk"], ["yes"])
    Xt, yt = prepare_frame(test, spec), binary_target(test["at_risk"], ["yes"])
    sensitive = test[SENSITIVE].reset_index(drop=True)
    print(
        f"{ROWS:,} generated rows ({len(X):,} train / {len(Xt):,} held out, "
        f"{yt.mean():.0%} at risk), {len(spec.columns)} features; private rows: mean ± sd over "
        f"{SEEDS} seeds"
    )
    print()
    print(
        "| family | ε | accuracy | AUC | worst FNR gap | gate pass/fail/inconclusive "
        "| accuracy vs non-private |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for algorithm in privacy.DP_ALGORITHMS:
        family = privacy.NON_PRIVATE[algorithm]
        base_setup = privacy.resolve(spec, X, 1.0)
        public = scores(
            privacy.fit_non_private(spec, algorithm, base_setup, X, y), Xt, yt, sensitive
        )
        print(
            f"| {family} | none | {public['accuracy']:.3f} | {public['auc']:.3f} "
            f"| {public['gap']:.3f} | {public['gate']} | — |"
        )
        for epsilon in EPSILONS:
            setup = privacy.resolve(spec, X, epsilon)
            runs = [
                scores(
                    privacy.fit_private(spec, algorithm, setup, X, y, seed=s).pipeline,
                    Xt,
                    yt,
                    sensitive,
                )
                for s in range(SEEDS)
            ]
            acc = np.array([r["accuracy"] for r in runs])
            auc = np.array([r["auc"] for r in runs])
            gap = np.array([r["gap"] for r in runs])
            gates = [r["gate"] for r in runs]
            tally = "/".join(str(gates.count(o)) for o in ("pass", "fail", "inconclusive"))
            print(
                f"| {family} | {epsilon:g} | {acc.mean():.3f} ± {acc.std():.3f} "
                f"| {auc.mean():.3f} ± {auc.std():.3f} | {np.nanmean(gap):.3f} ± "
                f"{np.nanstd(gap):.3f} | {tally} | {acc.mean() - public['accuracy']:+.3f} |"
            )


if __name__ == "__main__":
    main()
