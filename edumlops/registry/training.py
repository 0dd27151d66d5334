"""Start a training run from a few choices: save the ready-made training workflow for the
dataset and run it. Used by the "Train a model" page and POST /api/models/train/."""

from __future__ import annotations

from typing import Any, Literal

from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field

from edumlops.datasets.models import DatasetVersion
from workflows import engine
from workflows.compiler import validate
from workflows.models import Run, Workflow
from workflows.recipes import training_graph


class TrainingRequest(BaseModel):
    """What the page's form and the API ask for; everything else takes the blocks' defaults."""

    model_config = ConfigDict(extra="forbid")
    dataset_version: int
    model_name: str = Field("at-risk", pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    algorithm: Literal["logistic_regression", "random_forest", "hist_gradient_boosting"] = (
        "hist_gradient_boosting"
    )
    balanced: bool = True
    identifiers: Literal["drop", "hash"] = "drop"
    split_method: Literal["stratified", "school", "time"] = "stratified"
    test_share: float = Field(0.25, ge=0.05, le=0.5)
    threshold: float = Field(0.5, ge=0.01, le=0.99)
    min_auc: float = Field(0.7, ge=0, le=1)
    bias_metrics: list[str] = Field(default_factory=lambda: ["false_negative_rate"])
    max_difference: float = Field(0.1, gt=0, le=1)
    min_group_size: int = Field(30, ge=1)
    intersections: bool = True
    if_inconclusive: Literal["block", "ask_approval"] = "ask_approval"
    seed: int = Field(0, ge=0)

    def graph(self) -> dict[str, Any]:
        return training_graph(
            {
                "data": {"dataset_version": self.dataset_version},
                "minimise": {"identifiers": self.identifiers},
                "split": {
                    "method": self.split_method,
                    "test_share": self.test_share,
                    "seed": self.seed,
                },
                "train": {
                    "model_name": self.model_name,
                    "algorithm": self.algorithm,
                    "balanced": self.balanced,
                    "seed": self.seed,
                },
                "validate": {"threshold": self.threshold, "min_auc": self.min_auc},
                "bias": {
                    "metrics": self.bias_metrics,
                    "max_difference": self.max_difference,
                    "min_group_size": self.min_group_size,
                    "intersections": self.intersections,
                    "if_inconclusive": self.if_inconclusive,
                    "seed": self.seed,
                },
            }
        )


class TrainingError(ValueError):
    pass


def start_training(version: DatasetVersion, request: TrainingRequest, user: Any) -> Run:
    """Save (a new version of) the workflow "Train <model> on <dataset>" and start it."""
    roles = version.role_set
    if not roles.label or not roles.positive:
        raise TrainingError(
            f'Mark the label column and its positive class on "{version}" before training.'
        )
    graph = request.graph()
    errors = validate(graph)
    if errors:
        raise TrainingError("; ".join(e.message for e in errors))
    name = f"Train {request.model_name} on {version.dataset.name}"
    with transaction.atomic():
        workflow, _ = Workflow.objects.get_or_create(
            district=version.district,
            name=name[:200],
            defaults={
                "owner": user,
                "description": "Made by the Train a model page: open it on the canvas to change "
                "any step.",
            },
        )
        latest = workflow.latest_version()
        if latest is None or latest.graph != graph:
            workflow.save_version(graph, f"train on {version} ({request.algorithm})", user)
        return engine.start_run(workflow, user=user)
