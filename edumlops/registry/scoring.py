"""Registering a short-answer scorer: the scorer is trained on answers and their human scores
(edumlops.ml.short_answer), exported to ONNX with the parity check, and the ONNX file becomes a
model version of task type "ordinal score", like any other version in MLflow and in the mirror.

What is served is the ONNX file: it is logged as an MLflow artifact of the training run
(`scorer/model.onnx`, beside `scorer/scorer.json`: the points, the scale, the columns, the
parameters and the file's SHA-256) and the registered version's source is that `scorer/` folder.
The SHA-256 is also kept on the ModelVersion row (`training["scorer"]["onnx_sha256"]`):
`load_scorer` reads the file back and refuses it unless it hashes to that value, so a file
changed in the artifact store is never scored with.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import short_answer, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.task_types import TaskType
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import District

ARTIFACT_DIR = "scorer"
ONNX_FILE = "model.onnx"
CONFIG_FILE = "scorer.json"
FORMAT = 1  # of scorer.json: bump when its shape changes
ALGORITHM = "tfidf_logistic_regression"
PARITY_ANSWERS = 500  # held-out answers ONNX Runtime and scikit-learn must agree on
REFERENCE_WORDS = 20_000  # most frequent vocabulary words kept for the answer drift monitor


class ScorerError(ValueError):
    """The answers cannot be scored or trained on, or a stored scorer cannot be read; the message
    says why and what to change."""


@dataclass(frozen=True)
class ScorerJob:
    district: District
    dataset_version: DatasetVersion
    model_name: str  # without the district's prefix
    text_column: str
    score_column: str
    scale: tuple[int, int] | None  # (lowest, highest) point; None = as seen in training
    word_ngrams: tuple[int, int]
    char_ngrams: tuple[int, int]
    min_df: int
    c: float
    run_label: str
    workflow_run_id: int | None = None
    started_by: Any = None


@dataclass(frozen=True)
class Trained:
    model: ModelVersion
    model_uri: str
    scorer: short_answer.Scorer
    parity: short_answer.ScoringParity


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _scale(job: ScorerJob) -> tuple[int, int] | None:
    return None if job.scale is None else (int(job.scale[0]), int(job.scale[1]))


def train_and_register(
    job: ScorerJob,
    answers: pd.DataFrame,
    roles: Roles,
    check_answers: pd.DataFrame | None = None,
    progress: Callable[[str, float], None] = lambda stage, fraction: None,
) -> Trained:
    """Fit the scorer on `answers` (a text and a whole-point score column), export it to ONNX,
    check ONNX Runtime against scikit-learn on `check_answers` (held-out answers; else the
    training answers), log it to MLflow and register it. Raises ScorerError on bad answers, and
    when the ONNX file does not match scikit-learn."""
    try:
        prepared = short_answer.prepare_answers(
            answers, text=job.text_column, score=job.score_column, scale=_scale(job)
        )
    except short_answer.ScoringError as exc:
        raise ScorerError(str(exc)) from None
    progress(f"training on {len(prepared.texts)} answers", 0.1)
    try:
        scorer = short_answer.train_scorer(
            prepared.texts,
            prepared.scores,
            scale=prepared.scale,
            word_ngrams=job.word_ngrams,
            char_ngrams=job.char_ngrams,
            min_df=job.min_df,
            c=job.c,
        )
    except short_answer.ScoringError as exc:
        raise ScorerError(str(exc)) from None
    progress("exporting to ONNX", 0.6)
    if check_answers is not None and job.text_column in check_answers.columns:
        check = [t for t in check_answers[job.text_column].tolist() if short_answer.tokens(t)]
    else:
        check = []
    checked_on = "held-out answers"
    if not check:
        check, checked_on = prepared.texts, "training answers (no held-out answers given)"
    check = check[:PARITY_ANSWERS]
    try:
        export = short_answer.export_scorer_onnx(scorer, check)
    except short_answer.ScoringError as exc:
        raise ScorerError(str(exc)) from None
    digest = sha256(export.model_bytes)
    counts = np.bincount(prepared.scores - prepared.scale[0])
    version = job.dataset_version
    config = {
        "format": FORMAT,
        "text_column": job.text_column,
        "score_column": job.score_column,
        "scale": list(prepared.scale),
        "points": [int(p) for p in scorer.points],
        "normalization": short_answer.NORMALIZATION,
        "params": {
            "word_ngrams": list(job.word_ngrams),
            "char_ngrams": list(job.char_ngrams),
            "min_df": job.min_df,
            "c": job.c,
        },
        "onnx_sha256": digest,
        "onnx_bytes": len(export.model_bytes),
        "parity": {
            "rows": export.parity.rows,
            "disagreeing_scores": export.parity.disagreeing_scores,
            "max_prob_diff": export.parity.max_prob_diff,
            "tolerance": export.parity.tolerance,
            "checked_on": checked_on,
        },
        "dataset": str(version),
        "dataset_sha256": version.sha256,
    }
    lengths = scorer.train_lengths
    training = {
        "rows": len(prepared.texts),
        "dataset": str(version),
        "dataset_sha256": version.sha256,
        "score_counts": {str(prepared.scale[0] + i): int(n) for i, n in enumerate(counts) if n},
        "mean_score": float(prepared.scores.mean()),
        "answer_words": {
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "vocabulary": len(scorer.vocabulary),
        "reference": reference(prepared.texts, scorer.vocabulary),
        "seconds": round(scorer.seconds, 3),
        "scorer": config,
    }
    progress("logging to MLflow", 0.85)
    mlflow_ready()
    logged = _log(job, config, training, export.model_bytes, scorer)
    model = ModelVersion.objects.create(
        district=job.district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=ALGORITHM,
        task_type=TaskType.ORDINAL_SCORE.value,
        dataset_version=version,
        dataset_sha256=version.sha256,
        features={"text": [job.text_column]},
        roles=roles.to_dict(),
        training=training,
        workflow_run_id=job.workflow_run_id,
        created_by=job.started_by,
    )
    return Trained(model, logged.model_uri, scorer, export.parity)


def reference(texts: list[str], vocabulary: frozenset[str]) -> dict[str, Any]:
    """What the answer drift monitor compares new answers with: the training answers' lengths
    in words (a count per length), the scorer's word vocabulary (its REFERENCE_WORDS most
    frequent words in training) and the share of training words outside what is kept."""
    from collections import Counter

    lengths: Counter[int] = Counter()
    words: Counter[str] = Counter()
    for text in texts:
        found = short_answer.tokens(text)
        lengths[len(found)] += 1
        words.update(found)
    kept = [w for w, _ in words.most_common() if w in vocabulary][:REFERENCE_WORDS]
    total = sum(words.values())
    inside = sum(words[w] for w in kept)
    return {
        "length_counts": {str(n): c for n, c in sorted(lengths.items())},
        "vocabulary": sorted(kept),
        "words": total,
        "oov_share": (total - inside) / total if total else 0.0,
    }


def _log(
    job: ScorerJob,
    config: dict[str, Any],
    training: dict[str, Any],
    model_bytes: bytes,
    scorer: short_answer.Scorer,
) -> tracking.LoggedModel:
    import tempfile
    from pathlib import Path

    import mlflow

    name = f"{job.district.slug}-{job.model_name}"
    tags = {
        "district": job.district.slug,
        "dataset_sha256": job.dataset_version.sha256,
        "workflow_run": str(job.workflow_run_id),
        "task_type": TaskType.ORDINAL_SCORE.value,
        "onnx_sha256": config["onnx_sha256"],
    }
    experiment = tracking.experiment_id(f"{job.district.slug}/{job.model_name}")
    with mlflow.start_run(experiment_id=experiment, run_name=job.run_label) as run:
        mlflow.log_params(
            {
                "algorithm": ALGORITHM,
                "text_column": job.text_column,
                "score_column": job.score_column,
                "scale": f"{config['scale'][0]}..{config['scale'][1]}",
                "word_ngrams": f"{job.word_ngrams[0]}-{job.word_ngrams[1]}",
                "char_ngrams": f"{job.char_ngrams[0]}-{job.char_ngrams[1]}",
                "min_df": job.min_df,
                "c": job.c,
                "dataset_sha256": job.dataset_version.sha256,
            }
        )
        mlflow.log_metrics(
            {
                "train_rows": float(training["rows"]),
                "vocabulary": float(training["vocabulary"]),
                "fit_seconds": float(scorer.seconds),
                "onnx_max_prob_diff": float(config["parity"]["max_prob_diff"]),
            }
        )
        mlflow.set_tags(tags)
        with tempfile.TemporaryDirectory(prefix="edumlops-scorer-") as folder:
            path = Path(folder) / ONNX_FILE
            path.write_bytes(model_bytes)
            mlflow.log_artifact(str(path), ARTIFACT_DIR)
        mlflow.log_dict(config, f"{ARTIFACT_DIR}/{CONFIG_FILE}")
        mlflow.log_dict(training, "training.json")
    return tracking.register_version(name, run, ARTIFACT_DIR, tags)


def config_of(model_version: ModelVersion) -> dict[str, Any]:
    """The scorer's configuration as kept on the version (columns, scale, points, SHA-256)."""
    if model_version.task_type != TaskType.ORDINAL_SCORE.value:
        raise ScorerError(
            f"{model_version} is not a short-answer scorer (its task type is "
            f"{model_version.task_type}): only a version made by Train short-answer scorer "
            "has one."
        )
    config = (model_version.training or {}).get("scorer") or {}
    if config.get("format") != FORMAT or not config.get("onnx_sha256"):
        raise ScorerError(
            f"The scorer of {model_version} is recorded in format {config.get('format')}, and "
            f"this version of EduMLOps reads format {FORMAT}: train it again."
        )
    return config


def load_scorer(model_version: ModelVersion, threads: int = 1) -> short_answer.OnnxScorer:
    """The ONNX scorer of a scoring model version, read back from MLflow and checked against the
    SHA-256 recorded when it was trained: `score(texts)` gives the whole-point scores, expected
    scores and probabilities."""
    import shutil
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.exceptions import MlflowException

    config = config_of(model_version)
    mlflow_ready()
    uri = f"models:/{model_version.name}/{model_version.version}/{ONNX_FILE}"
    target = tempfile.mkdtemp(prefix="edumlops-scorer-")
    try:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=target)
            model_bytes = Path(local).read_bytes()
        except (MlflowException, OSError) as exc:
            raise ScorerError(
                f"The scorer of {model_version} cannot be read from MLflow ({uri}): {exc}. Is "
                "MLFLOW_TRACKING_URI the store it was trained with? Otherwise train it again."
            ) from None
    finally:
        shutil.rmtree(target, ignore_errors=True)
    digest = sha256(model_bytes)
    if digest != config["onnx_sha256"]:
        raise ScorerError(
            f"The ONNX file of {model_version} in MLflow ({uri}) hashes to {digest[:12]}…, not "
            f"the {config['onnx_sha256'][:12]}… recorded when it was trained: it was changed "
            "after training. Do not use it; train the scorer again."
        )
    try:
        return short_answer.OnnxScorer(model_bytes, threads=threads)
    except short_answer.ScoringError as exc:
        raise ScorerError(f"{model_version}: {exc}") from None


def clean(value: Any) -> Any:
    """A number JSON can hold (NaN and infinities become None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
