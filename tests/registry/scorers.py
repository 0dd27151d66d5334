"""The short-answer scorer the registry, API and page tests train: answers stored as a dataset,
TF-IDF on words (1-2) and letters (2-4), scored 0 to 3, on a real MLflow store."""

from __future__ import annotations

import pandas as pd

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.registry.scoring import ScorerJob, Trained, train_and_register


def train_test_scorer(
    district, frame: pd.DataFrame, roles: Roles | None = None, name: str = "Answers"
) -> Trained:
    roles = roles or Roles()
    version, _ = ingest(
        district=district, name=name, data=frame.to_csv(index=False).encode(), roles=roles
    )
    job = ScorerJob(
        district=district,
        dataset_version=version,
        model_name="short-answer-scorer",
        text_column="text",
        score_column="score_1",
        scale=(0, 3),
        word_ngrams=(1, 2),
        char_ngrams=(2, 4),
        min_df=2,
        c=1.0,
        run_label="test",
    )
    return train_and_register(job, frame, roles)
