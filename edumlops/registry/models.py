"""What the district knows about each registered model version.

MLflow is the source of truth for the model, its metrics and artifacts; this row mirrors what the
pages and permissions need (district, lineage, reports, aliases) and renders the model card.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import models

from edumlops.core.hooks import Hook
from edumlops.ml import task_types
from edumlops.schools.models import District

# [{by, decision, comment, at, step}] of a workflow run, oldest first; registered by workflows
run_approvals: Hook[list[dict[str, Any]]] = Hook("run_approvals", lambda run_id: [])


def mlflow_ready() -> None:
    """Point this process's MLflow client at the configured store (cheap when already done)."""
    from edumlops.ml import tracking

    tracking.configure(settings.MLFLOW_TRACKING_URI, settings.MLFLOW_ARTIFACT_ROOT)


@functools.lru_cache(maxsize=8)
def _pipeline(tracking_uri: str, name: str, version: str) -> Any:
    from edumlops.ml import tracking

    return tracking.load_pipeline(name, version)


class ModelVersion(models.Model):
    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=200)  # the MLflow registered model
    version = models.CharField(max_length=20)
    run_id = models.CharField(max_length=64)  # the MLflow run that trained it
    algorithm = models.CharField(max_length=40)
    # what it predicts (edumlops/ml/task_types.py): each step serves or refuses each type
    task_type = models.CharField(
        max_length=20, choices=task_types.CHOICES, default=task_types.TaskType.BINARY_RISK.value
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, on_delete=models.SET_NULL, related_name="models"
    )
    dataset_sha256 = models.CharField(max_length=64)
    features = models.JSONField(default=dict)  # FeatureSpec.to_dict()
    roles = models.JSONField(default=dict)  # the dataset roles it was trained with
    training = models.JSONField(default=dict)  # rows, schools, period, params
    validation = models.JSONField(default=dict)  # metrics, calibration, thresholds, champion
    bias_report = models.JSONField(default=dict, blank=True)
    bias_outcome = models.CharField(max_length=20, blank=True)  # pass / fail / inconclusive
    bundle = models.JSONField(default=dict, blank=True)  # the signed manifest + artifact path
    aliases = models.JSONField(default=list, blank=True)
    card_text = models.JSONField(default=dict, blank=True)  # intended use, limitations
    # per-feature bins and training histograms (edumlops.ml.drift.FeatureReference), and the
    # training predictions' histogram under "__prediction__"
    drift_reference = models.JSONField(default=dict, blank=True)
    workflow_run = models.ForeignKey(
        "workflows.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def permission_scope(self) -> District:
        return self.district

    @property
    def threshold(self) -> float:
        return float(self.validation.get("threshold", 0.5))

    @property
    def display_name(self) -> str:
        prefix = f"{self.district.slug}-"
        return self.name[len(prefix) :] if self.name.startswith(prefix) else self.name

    def feature_spec(self) -> Any:
        from edumlops.ml.training import FeatureSpec

        return FeatureSpec.from_dict(self.features)

    def pipeline(self) -> Any:
        """The fitted scikit-learn pipeline, loaded back from the MLflow registry."""
        mlflow_ready()
        return _pipeline(settings.MLFLOW_TRACKING_URI, self.name, self.version)

    def predict_proba(self, frame: Any) -> Any:
        from edumlops.ml.training import prepare_frame

        return self.pipeline().predict_proba(prepare_frame(frame, self.feature_spec()))[:, 1]

    def set_alias(self, alias: str, actor: Any = None, reason: str = "") -> None:
        """Move `alias` to this version in MLflow and in the mirror (one holder per alias), and
        write it to the audit trail."""
        from edumlops.audit import models as audit
        from edumlops.ml import tracking

        previous = tracking.version_with_alias(self.name, alias)
        tracking.set_alias(self.name, alias, self.version)
        audit.record(
            action=audit.AuditRecord.Action.ALIAS,
            actor=actor,
            target=self,
            before={alias: previous} if previous else {},
            after={alias: self.version},
            reason=reason,
        )
        for other in ModelVersion.objects.filter(name=self.name).exclude(pk=self.pk):
            if alias in other.aliases:
                other.aliases = [a for a in other.aliases if a != alias]
                other.save(update_fields=["aliases"])
        if alias not in self.aliases:
            self.aliases = sorted([*self.aliases, alias])
            self.save(update_fields=["aliases"])

    def approvals(self) -> list[dict[str, Any]]:
        """Who approved the run that made this version (the workflows app answers)."""
        if self.workflow_run_id is None:
            return []
        return run_approvals(self.workflow_run_id)

    def card(self) -> dict[str, Any]:
        from edumlops.ml.model_card import build_card

        return build_card(
            model={
                "name": self.name,
                "version": self.version,
                "algorithm": self.algorithm,
                "run_id": self.run_id,
                "aliases": self.aliases,
                "features": self.features,
                "created_at": self.created_at.isoformat() if self.created_at else None,
            },
            intended_use=self.card_text.get("intended_use") or "",  # "": the type's own text
            training=self.training,
            validation=self.validation,
            bias_report=self.bias_report,
            bundle=self.bundle,
            approvals=self.approvals(),
            extra_limitations=self.card_text.get("limitations", ""),
            task_type=self.task_type,
        )


class AnswerReview(models.Model):
    """A short answer a scorer was unsure about (its two most likely scores close), waiting for a
    teacher's score. Sent by the Answer drift monitor (with the row it came from) or by the
    predict API when the caller asks (`send_unsure_to_teachers`). A teacher's scores go back into
    the scorer's training answers (edumlops/registry/reviews.py)."""

    class Source(models.TextChoices):
        MONITOR = "monitor", "Answer drift monitor"
        PREDICT = "predict", "Predict API"

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for a teacher"
        RATED = "rated", "Rated"
        SKIPPED = "skipped", "Skipped (cannot be scored)"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="answer_reviews"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    row = models.IntegerField(null=True, blank=True)  # in dataset_version, from 0
    text = models.TextField()
    # the source row's other columns as text (its sensitive ones are not shown to the teacher,
    # and go back with the score into the training answers)
    row_values = models.JSONField(default=dict, blank=True)
    score = models.IntegerField()  # the scorer's most likely score
    expected = models.FloatField()
    probabilities = models.JSONField(default=dict)  # point -> probability
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.WAITING)
    teacher_score = models.IntegerField(null=True, blank=True)
    rated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rated_at = models.DateTimeField(null=True, blank=True)
    # the dataset version the score was added to (reviews.add_to_training), once it was
    stored_in = models.ForeignKey(
        "datasets.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["district", "status"], name="answer_review_waiting")]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "dataset_version", "row"],
                condition=models.Q(dataset_version__isnull=False),
                name="answer_review_once_per_row",
            )
        ]

    def __str__(self) -> str:
        return f"answer {self.pk} scored by {self.model_version}"

    def permission_scope(self) -> District:
        return self.district
