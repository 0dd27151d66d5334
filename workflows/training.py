"""Start a training run from a few choices: save the "Train a model" template
(workflows/templates/train-model.json) for the dataset and run it. Used by the "Train a model"
page and POST /api/models/train/ (workflows/training_views.py)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from edumlops.datasets.models import DatasetVersion
from workflows import engine
from workflows.compiler import validate
from workflows.gallery import ALL
from workflows.models import Run, Workflow

TRAIN_MODEL = ALL["train-model"]

# What the page's form and the API ask for (the template's choices, typed); everything else
# takes the blocks' defaults.
TrainingRequest = TRAIN_MODEL.choices


class TrainingError(ValueError):
    pass


def start_training(version: DatasetVersion, request: Any, user: Any) -> Run:
    """Save (a new version of) the workflow "Train <model> on <dataset>" and start it;
    `request` is a TrainingRequest."""
    roles = version.role_set
    if not roles.label or not roles.positive:
        raise TrainingError(
            f'Mark the label column and its positive class on "{version}" before training.'
        )
    graph = TRAIN_MODEL.build(request)
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
