"""Federated training on real Flower processes (a SuperLink and one SuperNode per school on this
machine, each SuperNode behind a byte-counting TCP forwarder) for 4 and 16 schools, against
centrally training the same logistic regression on the pooled rows.

Per case: seconds per training round (SecAgg+: four messages per school per round; a SuperNode
polls every 3 s when idle and starts one ClientApp process per message, so most of a round is
Flower's pacing, not arithmetic), bytes each school sent and received per round (wire bytes on
the forwarders, HTTP included, averaged over schools and rounds 2..R), and accuracy on the same
central held-out rows. The anchor is scikit-learn's fit on the pooled rows.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS_PER_SCHOOL = 400
ROUNDS = 3
NUMERIC = ["attendance_rate", "submission_rate", "lms_logins_weekly", "quiz_average", "prior_gpa"]
CATEGORICAL = {
    "ses": ["low", "middle", "high"],
    "english_learner": ["yes", "no"],
    "disability": ["none", "learning", "physical", "sensory"],
}


def one_case(schools: int) -> dict:
    from edumlops.ml import synth
    from edumlops.ml.federated import FederatedConfig, run_federated, to_sklearn_pipeline
    from edumlops.ml.federated_processes import LocalFederation
    from edumlops.ml.training import FeatureSpec, binary_target, build_pipeline, prepare_frame

    specs = [
        synth.SchoolSpec(f"s{k:02d}", f"School {k:02d}", "urban", "medium", 1.0, 0.1 * (k % 5 - 2))
        for k in range(schools)
    ]
    rows = synth.generate_district(int(ROWS_PER_SCHOOL * schools / 0.75), schools=specs, seed=4)
    holdout = rows.sample(frac=0.25, random_state=1)
    pooled = rows.drop(holdout.index)
    spec = FeatureSpec(NUMERIC, list(CATEGORICAL))
    x_test = prepare_frame(holdout, spec)
    y_test = binary_target(holdout["at_risk"], ["yes"]).to_numpy()

    x_train = prepare_frame(pooled, spec)
    y_train = binary_target(pooled["at_risk"], ["yes"])
    build_pipeline(spec, "logistic_regression", balanced=False, seed=0).fit(x_train, y_train)
    started = time.perf_counter()  # timed after a warm-up fit (imports, first-call costs)
    central = build_pipeline(spec, "logistic_regression", balanced=False, seed=0)
    central.fit(x_train, y_train)
    central_seconds = time.perf_counter() - started
    central_accuracy = float((central.predict(x_test) == y_test).mean())

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {}
        for s in specs:
            files[s.slug] = folder / f"{s.slug}.csv"
            pooled[pooled["school"] == s.name].to_csv(files[s.slug], index=False)
        config = FederatedConfig(
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            label="at_risk",
            positive=["yes"],
            schools=list(files),
            rounds=ROUNDS,
            min_schools=schools,
            local_epochs=20,
            max_school_rows=2000,
            join_timeout=120,
            round_timeout=180,
        )
        with LocalFederation(folder / "flower", files) as federation:
            marks: dict[int, dict[str, tuple[int, int]]] = {}

            def on_round(event: dict) -> None:
                marks[event["round"]] = federation.byte_counts()

            started = time.perf_counter()
            result = run_federated(
                config,
                control_address=federation.address,
                workdir=folder / "run",
                timeout=3600,
                on_round=on_round,
            )
            total_seconds = time.perf_counter() - started
    first, last = marks[1], marks[ROUNDS]
    sent = [last[c][0] - first[c][0] for c in files]
    received = [last[c][1] - first[c][1] for c in files]
    per_round = ROUNDS - 1
    federated_accuracy = float((to_sklearn_pipeline(result).predict(x_test) == y_test).mean())
    round_seconds = [r["seconds"] for r in result.rounds]
    return {
        "schools": schools,
        "rows": len(pooled),
        "round_seconds": sum(round_seconds) / len(round_seconds),
        "total_seconds": total_seconds,
        "sent": sum(sent) / len(sent) / per_round,
        "received": sum(received) / len(received) / per_round,
        "federated_accuracy": federated_accuracy,
        "central_seconds": central_seconds,
        "central_accuracy": central_accuracy,
    }


def main() -> int:
    warnings.simplefilter("ignore")
    print(
        f"federated ({ROUNDS} rounds of FedAvg with SecAgg+, 20 local epochs, {ROWS_PER_SCHOOL} "
        "training rows per school, real SuperLink and SuperNode processes) against central "
        "training of the same logistic regression on the pooled rows"
    )
    print()
    print(
        "| schools | pooled rows | s per round | whole run s | central fit s | ratio (round / "
        "central) | KiB sent per school per round | KiB received | accuracy federated | "
        "accuracy central |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for schools in (4, 16):
        r = one_case(schools)
        print(
            f"| {r['schools']} | {r['rows']:,} | {r['round_seconds']:.1f} | "
            f"{r['total_seconds']:.1f} | {r['central_seconds']:.3f} | "
            f"{r['round_seconds'] / r['central_seconds']:,.0f}× | {r['sent'] / 1024:.1f} | "
            f"{r['received'] / 1024:.1f} | {r['federated_accuracy']:.3f} | "
            f"{r['central_accuracy']:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
