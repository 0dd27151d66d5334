"""Modelling: train, validate, export to ONNX, set an alias, write the model card.

The work lives in edumlops.ml (training, evaluation, onnx_bundle, tracking); each block loads
what its input references name, calls it, and records the result on the ModelVersion and in
MLflow. A model reference carries the held-out part of the split it was trained beside, so the
chain train → validate → bias gate → export needs one edge per step.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edumlops.ml import evaluation, privacy, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.naming import MODEL_NAME_PATTERN
from edumlops.ml.training import (
    ALGORITHMS,
    FeatureSpec,
    binary_target,
    infer_features,
)
from edumlops.registry import export, training
from edumlops.registry.models import ModelVersion, mlflow_ready
from workflows.blocks.base import (
    Block,
    BlockError,
    Context,
    Params,
    Port,
    PortType,
    StepStopped,
    output,
)
from workflows.blocks.data import rows_for, version_for


def model_for(context: Context, ref: Any) -> ModelVersion:
    if not isinstance(ref, dict) or "model_version" not in ref:
        raise BlockError("The input is not a model: connect a Train model block's output.")
    model = (
        ModelVersion.objects.filter(pk=ref["model_version"], district=context.run.workflow.district)
        .select_related("district")
        .first()
    )
    if model is None:
        raise BlockError(f"Model version {ref['model_version']} no longer exists.")
    return model


def holdout(context: Context, ref: dict[str, Any], test: Any = None) -> tuple[Any, Roles]:
    """The held-out rows for a model: the block's own test input, else the one the model was
    trained beside."""
    test = test or ref.get("test")
    if not test:
        raise BlockError(
            "There are no held-out rows to test on: connect the Split block's held-out output "
            "to Train model's (or this block's) test input."
        )
    return rows_for(context, test)


class TrainParams(Params):
    model_name: str = Field(
        "at-risk",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in the registry (lowercase letters, digits, dashes).",
    )
    algorithm: Literal[
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
        "dp_logistic_regression",
        "dp_gaussian_nb",
    ] = Field(
        "hist_gradient_boosting",
        description=(
            "Logistic regression is simple and easy to explain; random forest and histogram "
            "gradient boosting catch interactions (boosting is fastest on large data). The two "
            "private ones (dp_…) learn with differential privacy: no single student's row can "
            "change the model much, at a cost in accuracy, and each run spends ε from the "
            "dataset's privacy budget for the school year."
        ),
        json_schema_extra={"labels": {**ALGORITHMS, **privacy.DP_ALGORITHMS}},
    )
    epsilon: float = Field(
        privacy.DEFAULT_EPSILON,
        ge=privacy.MIN_EPSILON,
        le=privacy.MAX_EPSILON,
        description=(
            "Private algorithms only: the privacy loss ε this training spends from the dataset's "
            "budget. Smaller is more private and less accurate; 1 is a common choice."
        ),
        json_schema_extra={"label": "Privacy ε"},
    )
    bounds: str = Field(
        "",
        max_length=4000,
        description=(
            "Private algorithms only: the range of each number, one per line as "
            "'name: lower..upper' (e.g. 'attendance_rate: 0..1'). Values outside are clipped. "
            "A number left out takes the range in the dataset's profile, and the model card "
            "says so, since a range read from the data leaks a little."
        ),
        json_schema_extra={"label": "Feature bounds"},
    )
    balanced: bool = Field(
        True,
        description=(
            "Weigh the rarer class up, so a model does not ignore the few at-risk students."
        ),
    )
    features: list[str] = Field(
        default=[],
        description="Columns to learn from; empty = every usable column the data keeps.",
        json_schema_extra={"choices": "dataset_columns"},
    )
    use_sensitive_attributes: bool = Field(
        False,
        description=(
            "Let the model see the sensitive attributes (SES, disability...). Off by default: "
            "they are kept only to check fairness."
        ),
    )
    seed: int = Field(0, ge=0, description="Random seed, so training can be repeated exactly.")

    @field_validator("bounds")
    @classmethod
    def _bounds_readable(cls, value: str) -> str:
        try:
            privacy.parse_bounds(value)
        except privacy.PrivacyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _bounds_only_when_private(self) -> TrainParams:
        if self.bounds.strip() and not privacy.is_private(self.algorithm):
            raise ValueError(
                "Feature bounds apply only to the private algorithms (dp_logistic_regression, "
                "dp_gaussian_nb): pick one of them or empty the bounds."
            )
        return self


class TrainBlock(Block):
    kind = "train_model"
    category = "model"
    label = "Train model"
    help = (
        "Trains a scikit-learn pipeline (fill gaps, one-hot categories, scale numbers, then the "
        "classifier) on the training rows, logs it to MLflow with its parameters, signature and "
        "an input example, and registers a new model version. The step shows how far it is. "
        "A private algorithm trains with differential privacy (diffprivlib), spends its ε from "
        "the dataset's privacy budget, and compares itself with the same model trained "
        "without privacy on the held-out rows for the model card."
    )
    icon = "cpu"
    Params = TrainParams
    inputs = (
        Port("train", (PortType.DATASET,), "Training rows"),
        Port("test", (PortType.DATASET,), "Held-out rows", required=False),
    )
    outputs = (output("model", PortType.MODEL, "Model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = inputs["train"]
        version = version_for(context, ref)
        context.progress("loading data", 0.0)
        frame, roles = rows_for(context, ref)
        if not roles.label:
            raise BlockError(f'"{version}" has no label column marked: mark it on its page.')
        spec = _features(frame, roles, ref, params)
        private = privacy.is_private(params.algorithm)
        name = {**ALGORITHMS, **privacy.DP_ALGORITHMS}[params.algorithm]
        context.log(
            f"{name} on {len(frame)} rows, {len(spec.columns)} features: {', '.join(spec.columns)}"
        )
        if private:
            context.log(
                f"Differential privacy: ε = {params.epsilon:g}"
                + (
                    "; the rarer class is not weighted up (weights would change the mechanism)"
                    if params.balanced
                    else ""
                )
            )
        job = training.TrainingJob(
            district=context.run.workflow.district,
            dataset_version=version,
            model_name=params.model_name,
            algorithm=params.algorithm,
            balanced=params.balanced,
            seed=params.seed,
            use_sensitive_attributes=params.use_sensitive_attributes,
            split=ref.get("split"),
            run_label=f"run {context.run_id} · {context.node_id}",
            workflow_run_id=context.run_id,
            started_by=context.run.started_by,
            epsilon=params.epsilon if private else None,
            bounds=privacy.parse_bounds(params.bounds) if private else None,
        )
        held_out = rows_for(context, inputs["test"])[0] if private and inputs.get("test") else None
        try:
            trained = training.train_and_register(
                job, frame, roles, spec, context.progress, holdout=held_out
            )
        except training.TrainingError as exc:
            raise BlockError(str(exc)) from None
        model = trained.model
        context.log(f"Registered {trained.model_uri} (MLflow run {model.run_id})")
        context.metric("train_rows", trained.rows)
        if private:
            _log_privacy(context, model.training.get("privacy") or {})
        return {
            "model": {
                "model_version": model.pk,
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "test": inputs.get("test"),
            }
        }


def _log_privacy(context: Context, info: dict[str, Any]) -> None:
    context.metric("epsilon", info["epsilon"])
    read = info.get("bounds_read_from_data") or []
    if read:
        context.log(f"Bounds read from the data (the card says so): {', '.join(read)}")
    comparison = info.get("comparison")
    if not comparison:
        context.log("No held-out rows: the card cannot compare with a non-private model.")
        return
    ours, theirs = comparison["private"], comparison["non_private"]
    context.metric("private_accuracy", ours["accuracy"])
    context.metric("non_private_accuracy", theirs["accuracy"])
    context.log(
        f"On {comparison['rows']} held-out rows: accuracy {ours['accuracy']:.3f} private vs "
        f"{theirs['accuracy']:.3f} non-private ({info['non_private_algorithm']}); AUC "
        f"{_num(ours['auc'])} vs {_num(theirs['auc'])}"
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _features(frame: Any, roles: Roles, ref: dict[str, Any], params: TrainParams) -> FeatureSpec:
    personal = set(ref.get("personal", [])) | set((ref.get("minimise") or {}).get("hashed", []))
    exclude = {roles.label, roles.time} | personal | set(roles.not_features)
    if not params.use_sensitive_attributes:
        exclude |= set(roles.sensitive)
    exclude.discard(None)
    if params.features:
        missing = [c for c in params.features if c not in frame.columns]
        if missing:
            raise BlockError(
                f"Feature(s) {', '.join(missing)} are not in the data this block receives "
                f"(columns: {', '.join(map(str, frame.columns))}): change the feature list."
            )
        blocked = [c for c in params.features if c in exclude]
        if blocked:
            raise BlockError(
                f"{', '.join(blocked)} cannot be a feature (the label, the column the outcome "
                "is made from or one that leaks it, the date/term column, a personal column, or "
                "a sensitive attribute while 'use sensitive attributes' is off): remove it from "
                "the feature list."
            )
        inferred = infer_features(frame[params.features], exclude=())
        spec = inferred
    else:
        spec = infer_features(frame, exclude=exclude)
    if not spec.columns:
        raise BlockError(
            "No usable feature is left (every column is the label, personal, sensitive or "
            "free text): keep more columns in Minimise data."
        )
    return spec


class ValidateParams(Params):
    threshold: float = Field(
        0.5,
        ge=0.01,
        le=0.99,
        description="Decision threshold: a student whose risk is at least this is flagged.",
    )
    min_auc: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Lowest acceptable ROC AUC.",
        json_schema_extra={"threshold": "district", "label": "Minimum AUC"},
    )
    min_recall: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Lowest acceptable recall (share of at-risk students found).",
        json_schema_extra={"threshold": "district", "label": "Minimum recall"},
    )
    min_precision: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Lowest acceptable precision (share of flags that are right).",
        json_schema_extra={"threshold": "district", "label": "Minimum precision"},
    )
    min_f1: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Lowest acceptable F1 score.",
        json_schema_extra={"threshold": "district", "label": "Minimum F1 score"},
    )
    max_brier: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Highest acceptable Brier score (calibration; lower is better).",
        json_schema_extra={"threshold": "district", "label": "Maximum Brier score"},
    )
    compare_with_champion: bool = Field(
        True,
        description="Also require this model to beat the one holding the champion alias.",
    )
    compare_metric: Literal["auc", "recall", "f1"] = Field(
        "auc", description="The metric the challenger must win on."
    )
    margin: float = Field(
        0.0, ge=0, le=0.5, description="How much better than the champion it must be."
    )


class ValidateBlock(Block):
    kind = "validate_model"
    category = "model"
    label = "Validate"
    help = (
        "Scores the held-out rows: AUC, recall and precision at the decision threshold, F1, "
        "Brier score and a calibration curve. The run stops when a metric misses its limit, or "
        "when the model does not beat the current champion by the margin."
    )
    icon = "check-circle"
    Params = ValidateParams
    inputs = (
        Port("model", (PortType.MODEL,), "Model version"),
        Port("test", (PortType.DATASET,), "Held-out rows", required=False),
    )
    outputs = (output("model", PortType.MODEL, "Validated model"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = dict(inputs["model"])
        model = model_for(context, ref)
        frame, roles = holdout(context, ref, inputs.get("test"))
        if inputs.get("test"):
            ref["test"] = inputs["test"]
        y = binary_target(frame[roles.label], roles.positive)
        proba = model.predict_proba(frame)
        metrics = evaluation.evaluate(y, proba, threshold=params.threshold)
        intervals = evaluation.bootstrap_intervals(y, proba, threshold=params.threshold)
        for key in ("auc", "recall", "precision", "f1", "brier"):
            if metrics.get(key) is not None:
                context.metric(key, metrics[key])
        tracking.log_metrics(
            model.run_id,
            {k: metrics[k] for k in ("auc", "recall", "precision", "f1", "brier", "accuracy")},
            prefix="test_",
        )
        failures = evaluation.check_thresholds(
            metrics,
            minimum={
                "auc": params.min_auc,
                "recall": params.min_recall,
                "precision": params.min_precision,
                "f1": params.min_f1,
            },
            maximum={"brier": params.max_brier},
        )
        champion = (
            _champion(context, model, frame, y, params) if params.compare_with_champion else None
        )
        if champion and not champion["beaten"]:
            failures.append(champion["verdict"])
        model.validation = {
            "threshold": params.threshold,
            "metrics": metrics,
            "intervals": intervals,
            "limits": params.model_dump(),
            "champion": champion,
            "test_rows": len(frame),
            "passed": not failures,
            "failures": failures,
        }
        model.save(update_fields=["validation"])
        tracking.log_json(model.run_id, "validation.json", model.validation)
        summary = ", ".join(
            f"{k} {metrics[k]:.3f}"
            for k in ("auc", "recall", "precision", "f1", "brier")
            if metrics.get(k) is not None
        )
        context.log(f"On {len(frame)} held-out rows at threshold {params.threshold:g}: {summary}")
        if champion:
            context.log(champion["verdict"])
        if failures:
            raise StepStopped("; ".join(failures))
        return {"model": ref}


def _champion(
    context: Context, model: ModelVersion, frame: Any, y: Any, params: ValidateParams
) -> dict[str, Any] | None:
    holder = tracking.version_with_alias(model.name, "champion")
    if holder is None or holder == model.version:
        context.log("No champion yet: nothing to compare with.")
        return None
    champion = ModelVersion.objects.filter(name=model.name, version=holder).first()
    if champion is None:
        return None
    try:
        proba = champion.predict_proba(frame)
    except ValueError as exc:
        return {
            "version": holder,
            "beaten": False,
            "verdict": f"The champion (version {holder}) cannot score these rows ({exc}); "
            "approve a challenger by hand or retrain on matching columns.",
        }
    theirs = evaluation.evaluate(y, proba, threshold=champion.threshold)
    ours = evaluation.evaluate(y, model.predict_proba(frame), threshold=params.threshold)
    metric = params.compare_metric
    mine, best = ours.get(metric) or 0.0, theirs.get(metric) or 0.0
    beaten = mine >= best + params.margin
    verdict = (
        f"{metric} {mine:.3f} vs champion version {holder} {best:.3f} on the same held-out rows: "
        + ("beats it" if beaten else f"does not beat it by the margin {params.margin:g}")
        + (f" (margin {params.margin:g})" if beaten and params.margin else "")
    )
    return {
        "version": holder,
        "metric": metric,
        "challenger": mine,
        "champion": best,
        "margin": params.margin,
        "beaten": beaten,
        "verdict": verdict,
    }


class ExportParams(Params):
    parity_rows: int = Field(
        1000, ge=10, le=100_000, description="Held-out rows used to compare ONNX with scikit-learn."
    )


class ExportOnnxBlock(Block):
    kind = "export_onnx"
    category = "model"
    label = "Export ONNX"
    help = (
        "Converts the whole pipeline (preprocessing included) to ONNX, checks it gives the same "
        "probabilities as scikit-learn on held-out rows (largest difference under 0.0001, else "
        "the step fails and says by how much), and signs a bundle (model.onnx, manifest.json, "
        "signature) kept in MLflow."
    )
    icon = "package"
    Params = ExportParams
    inputs = (Port("model", (PortType.MODEL,), "Model version"),)
    outputs = (output("model", PortType.MODEL, "Model with bundle"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = dict(inputs["model"])
        model = model_for(context, ref)
        frame, _ = holdout(context, ref)
        try:
            parity = export.export_bundle(model, frame, params.parity_rows, context.progress)
        except export.ParityError as exc:
            context.metric("onnx_max_abs_diff", exc.parity.max_abs_diff)
            raise BlockError(str(exc)) from None
        context.metric("onnx_max_abs_diff", parity.max_abs_diff)
        context.log(f"Parity with scikit-learn: {parity.describe()}")
        context.log(f"Signed bundle kept as MLflow artifacts of run {model.run_id} (bundle/)")
        return {"model": ref}


class SetAliasParams(Params):
    alias: Literal["challenger", "champion"] = Field(
        "challenger",
        description=(
            "challenger: a candidate to pilot; champion: the model schools use. One version "
            "holds each alias at a time."
        ),
    )


class SetAliasBlock(Block):
    kind = "set_alias"
    category = "model"
    label = "Register / set alias"
    help = (
        "Gives the model version an MLflow alias: challenger (a candidate) or champion (the one "
        "in use). The alias moves from whichever version held it before."
    )
    icon = "tag"
    Params = SetAliasParams
    inputs = (Port("model", (PortType.MODEL,), "Model version"),)
    outputs = (output("model", PortType.MODEL, "Model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        model = model_for(context, inputs["model"])
        mlflow_ready()
        previous = tracking.version_with_alias(model.name, params.alias)
        model.set_alias(
            params.alias,
            actor=context.run.started_by,
            reason=f"workflow run {context.run_id}, step {context.node_id}",
        )
        moved = f" (from version {previous})" if previous and previous != model.version else ""
        context.log(f"{model.name} version {model.version} is now {params.alias}{moved}")
        return {"model": inputs["model"]}


class ModelCardParams(Params):
    intended_use: str = Field(
        "Flag students who may be at risk so that staff can offer support early. Not for "
        "grading, placement or discipline decisions.",
        max_length=4000,
        description="What the model is for and what it must not be used for.",
    )
    limitations: str = Field(
        "",
        max_length=4000,
        description="Known limits, in plain words (added to those found automatically).",
    )


class ModelCardBlock(Block):
    kind = "model_card"
    category = "model"
    label = "Model card"
    help = (
        "Writes the model card: intended use, where the data came from (dataset hash, rows, "
        "schools, period), metrics overall and per group with intervals, the bias-gate outcome, "
        "limitations and approvals so far. Readable on the model's page, downloadable as "
        "Markdown or JSON, and kept in MLflow."
    )
    icon = "file-text"
    Params = ModelCardParams
    inputs = (Port("model", (PortType.MODEL,), "Model version"),)
    outputs = (output("report", PortType.REPORT, "Model card"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml import model_card

        model = model_for(context, inputs["model"])
        model.card_text = {"intended_use": params.intended_use, "limitations": params.limitations}
        model.save(update_fields=["card_text"])
        card = model.card()
        mlflow_ready()
        tracking.log_json(model.run_id, "model_card.json", card)
        tracking.log_text(model.run_id, "model_card.md", model_card.to_markdown(card))
        context.log(f"Model card written: /models/{model.pk}/")
        return {"report": {"model_version": model.pk, "card": f"/models/{model.pk}/"}}
