"""Knowledge tracing: pyBKT fit and predict at 10k and 100k generated answers (`--quick`: 1k and
10k). Anchor: pyBKT's own `Model.fit` then `Model.predict`. Ours: `fit_bkt` (pyBKT's EM driven
one level down, kept as plain numbers) then `predict_answers` (our BKT forward filter in NumPy,
all students' t-th answers at once). Both on the same log, with one EM start (`num_fits=1`; fit
time grows with it) and no process pool.

The log: 4 skills with a random plausible truth (edumlops.ml.knowledge_tracing), each student
answering each skill 10 times. Each side runs in a fresh process. The table also says how far
the two sides' parameters and next-answer predictions are apart (they should agree to rounding).

pyBKT 1.4.3's `Model` does not run beside scikit-learn 1.9 and NumPy 2.4 as it is (see
`fit_bkt`'s docstring); the anchor's process applies the two smallest fixes that let it run and
leaves pyBKT's computations alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SKILLS = 4
ANSWERS_PER_SKILL = 10


def data(answers: int):
    from edumlops.ml.knowledge_tracing import simulate_answers

    students = max(1, answers // (SKILLS * ANSWERS_PER_SKILL))
    return simulate_answers(SKILLS, students, ANSWERS_PER_SKILL, seed=0)


def pybkt_model_class():
    """pyBKT's `Model`, runnable here: while pyBKT imports, scikit-learn's private `_log_loss`
    answers lists with the TypeError pyBKT's metric probe expects; EM_fit's log-likelihood comes
    back as a number its `log_likelihoods[i][0] = ...` can store."""
    import numpy as np
    import sklearn.metrics._classification as classification
    from pyBKT.fit import EM_fit

    original = classification._log_loss

    def answers_lists_with_type_error(labels, proba, **kwargs):
        if not hasattr(proba, "dtype"):
            raise TypeError("lists")
        return original(labels, proba, **kwargs)

    classification._log_loss = answers_lists_with_type_error
    try:
        from pyBKT.models import Model
    finally:
        classification._log_loss = original
    run = EM_fit.run

    def run_with_a_number(*args, **kwargs):
        result = run(*args, **kwargs)
        result["total_loglike"] = float(np.asarray(result["total_loglike"]).reshape(-1)[0])
        return result

    EM_fit.run = run_with_a_number
    return Model


def anchor(answers: int, out: Path) -> dict:
    import numpy as np

    Model = pybkt_model_class()
    frame = data(answers)
    log = frame[["student", "skill", "order", "correct"]].rename(
        columns={"student": "user_id", "skill": "skill_name", "order": "order_id"}
    )
    start = time.perf_counter()
    model = Model(seed=0, num_fits=1, parallel=False)
    model.fit(data=log.copy())
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(data=log.copy())
    predict_seconds = time.perf_counter() - start
    np.save(out, predicted.sort_index()["correct_predictions"].to_numpy())
    values = model.params()["value"]
    names = {"prior": "prior", "learns": "learn", "guesses": "guess", "slips": "slip"}
    params = {
        f"{skill} {ours}": float(values.loc[(skill, theirs, "default")])
        for skill in sorted(frame["skill"].unique())
        for theirs, ours in names.items()
    }
    return {"fit": fit_seconds, "predict": predict_seconds, "params": params}


def ours(answers: int, out: Path) -> dict:
    import numpy as np

    from edumlops.ml.knowledge_tracing import fit_bkt, predict_answers

    frame = data(answers)
    start = time.perf_counter()
    model = fit_bkt(frame, seed=0, num_fits=1)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = predict_answers(model, frame)
    predict_seconds = time.perf_counter() - start
    np.save(out, predicted["p_correct"].to_numpy())
    params = {
        f"{skill} {name}": getattr(model.skills[skill], name)
        for skill in sorted(model.skills)
        for name in ("prior", "learn", "guess", "slip")
    }
    return {"fit": fit_seconds, "predict": predict_seconds, "params": params}


def run(kind: str, answers: int, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--case", kind, str(answers), str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(sizes: tuple[int, ...]) -> None:
    import numpy as np

    print(
        f"{SKILLS} skills, {ANSWERS_PER_SKILL} answers per student and skill; one EM start "
        "(num_fits=1), no process pool; seconds"
    )
    print()
    print(
        "| answers | pyBKT fit | ours fit | pyBKT predict | ours predict | predict speed-up "
        "| fit + predict pyBKT / ours | ours predict answers/s | max parameter gap "
        "| max P(correct) gap |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for answers in sizes:
            a_out, o_out = Path(folder) / "anchor.npy", Path(folder) / "ours.npy"
            a, o = run("anchor", answers, a_out), run("ours", answers, o_out)
            gap = max(abs(a["params"][k] - o["params"][k]) for k in a["params"])
            p_gap = float(np.abs(np.load(a_out) - np.load(o_out)).max())
            rows = len(np.load(o_out))
            print(
                f"| {rows:,} | {a['fit']:.1f} | {o['fit']:.1f} | {a['predict']:.2f} "
                f"| {o['predict']:.3f} | {a['predict'] / o['predict']:.0f}x "
                f"| {(a['fit'] + a['predict']) / (o['fit'] + o['predict']):.2f} "
                f"| {rows / o['predict']:,.0f} | {gap:.1e} | {p_gap:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        case = {"anchor": anchor, "ours": ours}[sys.argv[2]]
        print(json.dumps(case(int(sys.argv[3]), Path(sys.argv[4]))))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        parser.add_argument("--quick", action="store_true", help="1k and 10k answers only")
        args = parser.parse_args()
        main((1_000, 10_000) if args.quick else (10_000, 100_000))
