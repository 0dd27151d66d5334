"""Short-answer scorer: training time, and single-answer latency of scikit-learn `predict_proba`
(the anchor) against ONNX Runtime `session.run` on the same exported model.

Data: the generator's rated answers (edumlops.ml.short_answer_synth) on the 4 built-in prompts,
scores 0..3; the scorer is trained on human rater 1's scores and checked on 1,000 held-out
answers. The scorer is the product's (edumlops.ml.short_answer): word 1-2-gram and character
2-4-gram TF-IDF, multinomial logistic regression; exported with skl2onnx and parity-checked on
the held-out answers (the export fails if any score differs).

- train: seconds of `train_scorer` (the pipeline's fit) and of `export_scorer_onnx` (conversion
  plus the parity check); the n-gram features learnt; QWK against the humans and the truth.
- single answer: p50 / p99 of SINGLE calls with one answer each: scikit-learn `predict_proba`
  on a one-item list; ONNX Runtime's raw `session.run` on a ready (1, 1) string array; and the
  product's `OnnxScorer.score` (normalization, session.run and the scores). The ratio is
  scikit-learn's p50 over ONNX Runtime's `session.run` p50.
- batch: answers per second on the 1,000 held-out answers in one call (best of 3). ONNX's
  TfIdfVectorizer gives a dense (answers x features) tensor where scikit-learn keeps a sparse
  matrix, so ONNX Runtime's batch advantage shrinks as the vocabulary grows (about even at
  18k features); single answers are where it wins.

One thread for ONNX Runtime (the serving default); scikit-learn's sparse text path is
single-threaded. `--quick`: 1 prompt, 1,000 training answers, 100 calls, to check that it runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELD_OUT = 1_000


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def timed(fn, items: list) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1e6)
    return out


def rate(fn, texts: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 prompt, 1k answers, 100 calls")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import numpy as np

    from edumlops.ml.short_answer import (
        OnnxScorer,
        agreement,
        export_scorer_onnx,
        normalize_text,
        train_scorer,
    )
    from edumlops.ml.short_answer_synth import simulate_answers

    prompts, sizes, single = (1, [1_000], 100) if args.quick else (4, [2_000, 10_000], 400)
    print(
        f"{prompts} prompt(s), scores 0..3; {HELD_OUT:,} held-out answers; single answer: "
        f"p50 / p99 of {single} calls in µs; ONNX Runtime on 1 thread"
    )
    print()
    print(
        "| training answers | features | train s | export + parity s | QWK human / truth "
        "| sklearn p50 / p99 µs | ORT session.run p50 / p99 µs | OnnxScorer p50 / p99 µs "
        "| single-answer ratio (sklearn / ORT p50) | sklearn batch answers/s "
        "| ORT batch answers/s | batch ratio |"
    )
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    notes = []
    for size in sizes:
        per_prompt = (size + HELD_OUT) // prompts + 1
        frame = simulate_answers(prompts, per_prompt, seed=0).sample(frac=1, random_state=0)
        train, test = frame.iloc[:size], frame.iloc[size : size + HELD_OUT]
        scorer = train_scorer(train["text"], train["score_1"], scale=(0, 3))
        clock = time.perf_counter()
        export = export_scorer_onnx(scorer, test["text"])
        export_seconds = time.perf_counter() - clock
        onnx = OnnxScorer(export.model_bytes, threads=1)
        scores = scorer.score(test["text"]).scores
        human = agreement(test["score_1"], scores, (0, 3)).qwk
        truth = agreement(test["true_score"], scores, (0, 3)).qwk
        features = sum(
            len(vec.vocabulary_)
            for _, vec in scorer.pipeline.named_steps["features"].transformer_list
        )
        texts = [normalize_text(t) for t in test["text"]]
        singles = [[t] for t in texts[:single]]
        feeds = [{onnx.input: np.array(one, dtype=object).reshape(1, 1)} for one in singles]
        proba, session = onnx._proba, onnx.session
        for one, feed in zip(singles[:20], feeds[:20], strict=True):  # warm up both
            scorer.pipeline.predict_proba(one)
            session.run([proba], feed)
        sk = percentiles(timed(scorer.pipeline.predict_proba, singles))
        raw = percentiles(timed(lambda f, s=session, o=proba: s.run([o], f), feeds))
        ours = percentiles(timed(onnx.score, singles))
        sk_rate = rate(scorer.pipeline.predict_proba, texts)
        ort_rate = rate(onnx.predict_proba, texts)
        print(
            f"| {size:,} | {features:,} | {scorer.seconds:.2f} | {export_seconds:.2f} "
            f"| {human:.3f} / {truth:.3f} | {sk[0]:,.0f} / {sk[1]:,.0f} "
            f"| {raw[0]:,.0f} / {raw[1]:,.0f} | {ours[0]:,.0f} / {ours[1]:,.0f} "
            f"| {sk[0] / raw[0]:.1f}x | {sk_rate:,.0f} | {ort_rate:,.0f} "
            f"| {ort_rate / sk_rate:.1f}x |",
            flush=True,
        )
        notes.append(f"- {size:,} training answers: {export.parity.describe()}")
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
