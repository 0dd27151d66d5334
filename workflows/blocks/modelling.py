"""Modelling: train, validate, export to ONNX, set an alias, write the model card.

The work lives in edumlops.ml (training, evaluation, onnx_bundle, tracking); each block loads
what its input references name, calls it, and records the result on the ModelVersion and in
MLflow. A model reference carries the held-out part of the split it was trained beside, so the
chain train → validate → bias gate → export needs one edge per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from edumlops.ml import evaluation, privacy, task_types, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.naming import MODEL_NAME_PATTERN
from edumlops.ml.task_types import TaskType
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


def model_for(
    context: Context,
    ref: Any,
    *,
    step: str = "",
    accepts: tuple[TaskType, ...] = tuple(TaskType),
    instead: dict[TaskType, str] | None = None,
) -> ModelVersion:
    """The model version an input refers to. A block that works on some task types only names
    itself as `step` and lists them in `accepts`: another type is refused in a sentence that
    says what to use `instead`."""
    if not isinstance(ref, dict) or "model_version" not in ref:
        raise BlockError("The input is not a model: connect a Train model block's output.")
    model = (
        ModelVersion.objects.filter(pk=ref["model_version"], district=context.run.workflow.district)
        .select_related("district")
        .first()
    )
    if model is None:
        raise BlockError(f"Model version {ref['model_version']} no longer exists.")
    refused = task_types.refusal(step or "This block", model.task_type, accepts, instead or {})
    if refused:
        raise BlockError(f"{model}: {refused}")
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
    def _bounds_readable(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and not privacy.is_private(info.data.get("algorithm", "")):
            raise ValueError(
                "feature bounds apply only to the private algorithms (dp_logistic_regression, "
                "dp_gaussian_nb): pick one of them or empty the bounds"
            )
        try:
            privacy.parse_bounds(value)
        except privacy.PrivacyError as exc:
            raise ValueError(str(exc)) from None
        return value


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
        model = model_for(
            context,
            ref,
            step="Validate model",
            accepts=(TaskType.BINARY_RISK,),
            instead={
                TaskType.ORDINAL_SCORE: "Validate short-answer scorer (validate_scorer)",
                TaskType.MASTERY: "Validate mastery (it checks next answers of held-out students)",
            },
        )
        if federated_counts(model) and not (inputs.get("test") or ref.get("test")):
            return self._from_counts(context, ref, model, params)
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

    @staticmethod
    def _from_counts(
        context: Context, ref: dict[str, Any], model: ModelVersion, params: ValidateParams
    ) -> dict[str, Any]:
        """A model trained across schools, with no central held-out rows: judged on the confusion
        counts the schools returned for their own held-out rows. AUC and the Brier score need
        scores, which never leave a school: connect central held-out rows to check them."""
        counts = federated_counts(model) or {}
        metrics = evaluation.evaluate_counts(counts, threshold=params.threshold)
        limits = {
            "recall": params.min_recall,
            "precision": params.min_precision,
            "f1": params.min_f1,
        }
        failures = evaluation.check_thresholds(metrics, minimum=limits)
        unmeasured = [
            name
            for name, limit, off in (
                ("AUC", params.min_auc, 0),
                ("Brier score", params.max_brier, 1),
            )
            if limit != off
        ]
        note = (
            f"{' and '.join(unmeasured)} not checked: the schools return counts, not scores; "
            "connect central held-out rows to check them."
            if unmeasured
            else ""
        )
        for key in ("recall", "precision", "f1", "accuracy"):
            if metrics.get(key) is not None:
                context.metric(key, metrics[key])
        mlflow_ready()
        tracking.log_metrics(
            model.run_id,
            {k: metrics[k] for k in ("recall", "precision", "f1", "accuracy")},
            prefix="federated_test_",
        )
        model.validation = {
            "threshold": params.threshold,
            "metrics": metrics,
            "intervals": {},
            "limits": params.model_dump(),
            "champion": None,
            "test_rows": metrics["n"],
            "from_counts": True,
            "note": note,
            "passed": not failures,
            "failures": failures,
        }
        model.save(update_fields=["validation"])
        tracking.log_json(model.run_id, "validation.json", model.validation)
        summary = ", ".join(
            f"{k} {metrics[k]:.3f}"
            for k in ("recall", "precision", "f1", "accuracy")
            if metrics.get(k) is not None
        )
        context.log(
            f"On {metrics['n']} held-out students at the schools (their summed counts): {summary}"
        )
        if note:
            context.log(note)
        if failures:
            raise StepStopped("; ".join(failures))
        return {"model": ref}


def federated_counts(model: ModelVersion) -> dict[str, Any] | None:
    """The summed confusion counts of a model trained across schools, if it is one."""
    fed = (model.training or {}).get("federated") or {}
    overall = (fed.get("evaluation") or {}).get("overall")
    return overall or None


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
        model = model_for(
            context,
            ref,
            step="Export to ONNX",
            accepts=(TaskType.BINARY_RISK,),
            instead={
                TaskType.ORDINAL_SCORE: "Train short-answer scorer (it exports the scorer to "
                "ONNX and checks its parity itself)",
                TaskType.MASTERY: "Register / set alias (its parameters per skill are served "
                "as they are: there is nothing to convert)",
            },
        )
        if not ref.get("test") and ref.get("sample"):
            # trained across schools: parity is checked on the district's schema sample
            frame, _ = rows_for(context, ref["sample"])
            context.log("Parity checked on the rows of the schema dataset (no held-out rows)")
        else:
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
        "",
        max_length=4000,
        description=(
            "What the model is for and what it must not be used for. Empty: the standard text "
            "for the model's type (e.g. for a yes/no risk model: flag students who may be at "
            "risk so that staff can offer support early)."
        ),
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


class FederatedParams(Params):
    model_name: str = Field(
        "at-risk-federated",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in the registry (lowercase letters, digits, dashes).",
    )
    schools: list[str] = Field(
        default=[],
        description=(
            "School codes or tags of the schools that may take part; empty = every school whose "
            "server runs a federated node."
        ),
    )
    family: Literal["logistic_regression", "sgd_logistic_regression"] = Field(
        "logistic_regression",
        description=(
            "Logistic regression trained by each school with full-batch gradient steps, or by "
            "mini-batch SGD (faster on large schools)."
        ),
    )
    rounds: int = Field(5, ge=1, le=200, description="Rounds of local training and averaging.")
    min_schools: int = Field(
        3,
        ge=2,
        le=1000,
        description=(
            "A round needs at least this many schools (secure aggregation needs two or more); "
            "with fewer the run fails and makes no model."
        ),
    )
    fraction: float = Field(
        1.0, gt=0, le=1, description="Share of the connected schools asked to train each round."
    )
    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg",
        description=(
            "FedAvg averages the schools' models weighted by their rows; FedProx also keeps each "
            "school near the global model (helps when schools differ a lot)."
        ),
    )
    proximal_mu: float = Field(0.1, ge=0, le=10, description="FedProx's pull to the global model.")
    local_epochs: int = Field(2, ge=1, le=50, description="Passes over its rows per round.")
    learning_rate: float = Field(0.1, gt=0, le=10, description="Step size of local training.")
    differential_privacy: bool = Field(
        False,
        description=(
            "Clip each school's update and add Gaussian noise (Flower's client-side clipping): "
            "spends ε from the cohort's privacy budget."
        ),
    )
    clipping_norm: float = Field(1.0, gt=0, le=100, description="Largest update a school sends.")
    noise_multiplier: float = Field(
        1.0, gt=0, le=100, description="Noise relative to the clipping norm (more = more private)."
    )
    features: list[str] = Field(
        default=[],
        description="Columns to learn from; empty = every usable column of the schema dataset.",
        json_schema_extra={"choices": "dataset_columns"},
    )
    use_sensitive_attributes: bool = Field(
        False, description="Let the model see the sensitive attributes (off by default)."
    )
    seed: int = Field(0, ge=0, description="Random seed, so a run can be repeated.")
    timeout_minutes: int = Field(
        30, ge=1, le=24 * 60, description="Give up (with no model) after this long."
    )


class TrainFederatedBlock(Block):
    kind = "train_federated"
    category = "model"
    label = "Train across schools (federated)"
    help = (
        "Trains one model across the school servers with Flower: each school trains on its own "
        "records, which never leave it, and sends only model updates, combined by secure "
        "aggregation (SecAgg+) so the district sees only their sum. Schools offline in a round "
        "are skipped; the run lists who took part in each round. The schema dataset (same "
        "columns as the schools' files) gives the features, the outcome and the drift bins."
    )
    icon = "share-2"
    Params = FederatedParams
    inputs = (
        Port("schema", (PortType.DATASET,), "Schema dataset (columns, outcome, drift bins)"),
        Port("test", (PortType.DATASET,), "Central held-out rows", required=False),
    )
    outputs = (output("model", PortType.MODEL, "Model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from django.conf import settings

        from edumlops.ml import federated
        from edumlops.privacy import ledger
        from edumlops.registry import federated as registry_federated

        ref = inputs["schema"]
        version = version_for(context, ref)
        district = context.run.workflow.district
        frame, roles = rows_for(context, ref)
        if not roles.label:
            raise BlockError(f'"{version}" has no label column marked: mark it on its page.')
        spec = _features(frame, roles, ref, params)
        schools = _school_codes(district, params.schools)
        sensitive = [c for c in roles.sensitive if c in frame.columns]
        config = federated.FederatedConfig(
            numeric=list(spec.numeric),
            categorical={c: _categories(frame[c]) for c in spec.categorical},
            label=roles.label,
            positive=[str(v) for v in roles.positive],
            schools=schools,
            sensitive=sensitive,
            sensitive_groups={
                c: _categories(frame[c]) for c in sensitive if c not in spec.categorical
            },
            family="sgd_logistic" if params.family == "sgd_logistic_regression" else params.family,
            rounds=params.rounds,
            min_schools=params.min_schools,
            fraction=params.fraction,
            strategy=params.strategy,
            proximal_mu=params.proximal_mu if params.strategy == "fedprox" else 0.0,
            local_epochs=params.local_epochs,
            learning_rate=params.learning_rate,
            dp_clipping_norm=params.clipping_norm if params.differential_privacy else None,
            dp_noise_multiplier=params.noise_multiplier if params.differential_privacy else None,
            seed=params.seed,
        )
        try:
            config.validate()
        except federated.FederatedError as exc:
            raise BlockError(str(exc)) from None
        if config.dp:
            dp = federated.dp_summary(config, params.rounds) or {}
            try:
                ledger.check(district, version.dataset, float(dp["epsilon"]))
            except ledger.BudgetExceeded as exc:
                raise BlockError(str(exc)) from None
            context.log(
                f"Noised updates will spend ε = {dp['epsilon']:.3g} (δ = {dp['delta']:g}, per "
                "school) of the cohort's privacy budget"
            )
        context.log(
            f"Training across {len(schools)} school(s) ({', '.join(schools)}): {params.rounds} "
            f"rounds of {params.strategy}, {len(spec.columns)} features"
        )

        def on_round(summary: dict[str, Any]) -> None:
            done = int(summary.get("round", 0))
            took_part = ", ".join(map(str, summary.get("schools", []))) or "no school"
            dropped = summary.get("dropped") or []
            context.progress(
                f"round {done} of {params.rounds}", 0.05 + 0.85 * done / max(1, params.rounds)
            )
            context.log(
                f"Round {done}: {took_part}"
                + (f" (offline or dropped: {', '.join(map(str, dropped))})" if dropped else "")
            )

        try:
            result = federated.run_federated(
                config,
                control_address=settings.FLOWER_SUPERLINK,
                workdir=Path(settings.VAR_DIR) / "federated" / f"run-{context.run_id}",
                timeout=params.timeout_minutes * 60,
                on_round=on_round,
            )
        except federated.FederatedError as exc:
            raise BlockError(f"Federated training failed, no model was made: {exc}") from None
        pipeline = federated.to_sklearn_pipeline(result)
        context.progress("registering", 0.92)
        job = registry_federated.FederatedJob(
            district=district,
            schema_version=version,
            model_name=params.model_name,
            params={k: v for k, v in params.model_dump().items() if k != "features"},
            run_label=f"run {context.run_id} · {context.node_id}",
            workflow_run_id=context.run_id,
            started_by=context.run.started_by,
        )
        try:
            trained = registry_federated.register(job, result, pipeline, frame, roles, spec)
        except ledger.BudgetExceeded as exc:
            raise BlockError(str(exc)) from None
        model = trained.model
        context.log(f"Registered {trained.model_uri} (MLflow run {model.run_id})")
        context.metric("rounds", len(result.rounds))
        return {
            "model": {
                "model_version": model.pk,
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "test": inputs.get("test"),
                "sample": ref,
            }
        }


def _categories(values: Any) -> list[str]:
    """A column's categories as the schools' files hold them (text; 'missing' for gaps)."""
    from edumlops.ml.training import MISSING, prepare_frame

    frame = prepare_frame(values.to_frame(), FeatureSpec([], [values.name]))
    return sorted({*map(str, frame[values.name].unique()), MISSING})


def _school_codes(district: Any, wanted: list[str]) -> list[str]:
    """School codes for the codes or tags given (empty = every school of the district)."""
    schools = list(district.schools.all())
    if not wanted:
        return [s.code for s in schools]
    codes: list[str] = []
    unknown = []
    for item in wanted:
        matched = [s.code for s in schools if s.code == item or item in (s.tags or [])]
        if not matched:
            unknown.append(item)
        codes += [c for c in matched if c not in codes]
    if unknown:
        raise BlockError(
            f"No school has the code or tag {', '.join(map(repr, unknown))}: use codes such as "
            f"{', '.join(s.code for s in schools[:5])}, or a tag set on the schools."
        )
    return codes


class TrainForecastParams(Params):
    model_name: str = Field(
        "enrollment-forecast",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in the registry (lowercase letters, digits, dashes).",
    )
    method: Literal["ets", "gbm", "seasonal_naive"] = Field(
        "ets",
        description=(
            "Exponential smoothing (ETS) follows each school and grade's trend and its pattern "
            "over the year; gradient boosting learns from the recent growth of all schools at "
            "once; seasonal naive repeats last year's count for the same term (the baseline "
            "the Backtest gate compares with)."
        ),
        json_schema_extra={
            "labels": {
                "ets": "Exponential smoothing (ETS)",
                "gbm": "Gradient boosting on lags",
                "seasonal_naive": "Seasonal naive (last year's count)",
            }
        },
    )
    horizon: int = Field(
        0,
        ge=0,
        le=24,
        description="How many terms ahead to forecast; 0 = one school year (all its terms).",
        json_schema_extra={"unit": "terms"},
    )
    level: float = Field(
        0.8,
        ge=0.5,
        le=0.99,
        description=(
            "How sure the range around each forecast is: 0.8 means the actual count should fall "
            "inside it 8 times out of 10."
        ),
        json_schema_extra={"label": "Interval level"},
    )
    by: Literal["grade", "school"] = Field(
        "grade",
        description="Forecast each school and grade, or each school's total.",
    )
    calibration_origins: int = Field(
        6,
        ge=0,
        le=40,
        description=(
            "Check the ranges against what happened after this many past terms, and widen (or "
            "narrow) them until they held the actual count as often as the interval level says; "
            "0 = the model's own ranges, which are often too narrow."
        ),
        json_schema_extra={"unit": "terms", "label": "Calibrate ranges on"},
    )


class TrainForecastBlock(Block):
    kind = "train_forecast"
    category = "model"
    label = "Train enrollment forecast"
    help = (
        "Forecasts how many students each school and grade will have in the coming terms, with "
        "a range of likely values, from the enrollment history (one row per school, grade and "
        "term: school, grade, year, term and enrollment). A school with too little history for "
        "the method (one that just opened) gets a simpler forecast, and the log says which. "
        "Logs to MLflow and registers a forecast model version whose forecast table is kept "
        "with it."
    )
    icon = "trending-up"
    Params = TrainForecastParams
    inputs = (Port("history", (PortType.DATASET,), "Enrollment history"),)
    outputs = (output("model", PortType.MODEL, "Forecast model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.forecast import LABELS, calibration_words
        from edumlops.registry import forecasts

        ref = inputs["history"]
        version = version_for(context, ref)
        context.progress("loading the history", 0.0)
        frame, roles = rows_for(context, ref)
        job = forecasts.ForecastJob(
            district=context.run.workflow.district,
            dataset_version=version,
            model_name=params.model_name,
            method=params.method,
            horizon=params.horizon or None,
            level=params.level,
            by=params.by,
            run_label=f"run {context.run_id} · {context.node_id}",
            workflow_run_id=context.run_id,
            started_by=context.run.started_by,
            calibrate=params.calibration_origins,
        )
        try:
            trained = forecasts.train_and_register(job, frame, roles, context.progress)
        except forecasts.ForecastError as exc:
            raise BlockError(f'"{version}" cannot be forecast: {exc}') from None
        model = trained.model
        info = model.training["forecast"]
        context.log(
            f"{LABELS[params.method]} on {model.training['series']} series "
            f"({'school and grade' if params.by == 'grade' else 'school'}), "
            f"{model.training['terms']} terms ({model.training['period']['from']} to "
            f"{model.training['period']['to']}): {info['horizon']} term(s) ahead, "
            f"{info['first_period']} to {info['last_period']}, {params.level:.0%} intervals"
        )
        for reason in info["fallback_reasons"]:
            context.log(f"Fallback: {reason}")
        context.log(calibration_words(info.get("calibration"), params.level))
        context.log(
            f"Next term, all schools: {info['total_next_term']:,.0f} students forecast "
            f"(last term: {model.training['students_last_term']:,})"
        )
        context.log(f"Registered {trained.model_uri} (MLflow run {model.run_id})")
        context.metric("series", info["series"])
        context.metric("fallbacks", info["fallbacks"])
        context.metric("forecast_next_term", info["total_next_term"])
        return {
            "model": {
                "model_version": model.pk,
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "history": ref,
            }
        }


SCALE_PATTERN = r"^\s*(-?\d+\s*\.\.\s*-?\d+)?\s*$"


def _scale(value: str) -> tuple[int, int] | None:
    """'0..3' as (0, 3); empty as None (the scale seen in the answers)."""
    if not value.strip():
        return None
    low, high = (int(part) for part in value.split(".."))
    if low >= high:
        raise BlockError(
            f"The score scale {value.strip()!r} must go from the lowest to the highest point, "
            "e.g. 0..3."
        )
    return low, high


class TrainTextScorerParams(Params):
    model_name: str = Field(
        "short-answer-scorer",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in the registry (lowercase letters, digits, dashes).",
    )
    text_column: str = Field(
        "text",
        min_length=1,
        max_length=200,
        description="The column with the students' answers (free text).",
        json_schema_extra={"choices": "dataset_columns"},
    )
    score_column: str = Field(
        "score_1",
        min_length=1,
        max_length=200,
        description="The column with the teacher's score of each answer, in whole points.",
        json_schema_extra={"choices": "dataset_columns"},
    )
    scale: str = Field(
        "",
        pattern=SCALE_PATTERN,
        description=(
            "The lowest and highest score of the rubric, e.g. 0..3; empty = the lowest and "
            "highest score teachers gave in these answers."
        ),
        json_schema_extra={"label": "Score scale"},
    )
    word_ngram_max: int = Field(
        2,
        ge=1,
        le=3,
        description="Longest run of words the scorer looks at (2: single words and word pairs).",
        json_schema_extra={"label": "Longest word sequence"},
    )
    char_ngram_min: int = Field(
        2,
        ge=1,
        le=6,
        description="Shortest run of letters looked at (letters catch misspelt key words).",
        json_schema_extra={"label": "Shortest letter sequence"},
    )
    char_ngram_max: int = Field(
        4,
        ge=1,
        le=6,
        description="Longest run of letters looked at.",
        json_schema_extra={"label": "Longest letter sequence"},
    )
    min_df: int = Field(
        2,
        ge=1,
        le=100,
        description="A word or letter sequence counts only when at least this many answers use it.",
        json_schema_extra={"label": "Fewest answers per term", "unit": "answers"},
    )
    c: float = Field(
        1.0,
        gt=0,
        le=1000,
        description=(
            "How closely the scorer may follow the training answers (inverse regularization): "
            "lower is smoother, higher fits the training answers more closely."
        ),
        json_schema_extra={"label": "Regularization C"},
    )


class TrainTextScorerBlock(Block):
    kind = "train_text_scorer"
    category = "model"
    label = "Train short-answer scorer"
    help = (
        "Learns to score free-text answers from answers teachers already scored: word and "
        "letter sequences (TF-IDF) with a logistic regression over the score points, so a "
        "misspelt key word still counts. Exports the scorer to ONNX and checks ONNX Runtime "
        "gives the same scores as scikit-learn on the held-out answers (else the step fails), "
        "logs it to MLflow and registers a scoring model version. The answers need a text "
        "column and a column with the teacher's score in whole points."
    )
    icon = "cpu"
    Params = TrainTextScorerParams
    inputs = (
        Port("train", (PortType.DATASET,), "Scored answers to learn from"),
        Port("test", (PortType.DATASET,), "Held-out answers", required=False),
    )
    outputs = (output("model", PortType.MODEL, "Scoring model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.registry import scoring

        ref = inputs["train"]
        version = version_for(context, ref)
        if params.char_ngram_min > params.char_ngram_max:
            raise BlockError(
                f"The shortest letter sequence ({params.char_ngram_min}) is longer than the "
                f"longest ({params.char_ngram_max}): make the shortest at most the longest."
            )
        context.progress("loading the answers", 0.0)
        frame, roles = rows_for(context, ref)
        held_out = rows_for(context, inputs["test"])[0] if inputs.get("test") else None
        job = scoring.ScorerJob(
            district=context.run.workflow.district,
            dataset_version=version,
            model_name=params.model_name,
            text_column=params.text_column,
            score_column=params.score_column,
            scale=_scale(params.scale),
            word_ngrams=(1, params.word_ngram_max),
            char_ngrams=(params.char_ngram_min, params.char_ngram_max),
            min_df=params.min_df,
            c=params.c,
            run_label=f"run {context.run_id} · {context.node_id}",
            workflow_run_id=context.run_id,
            started_by=context.run.started_by,
        )
        try:
            trained = scoring.train_and_register(job, frame, roles, held_out, context.progress)
        except scoring.ScorerError as exc:
            raise BlockError(f'"{version}" cannot train a scorer: {exc}') from None
        model = trained.model
        info = model.training
        config = info["scorer"]
        counts = ", ".join(f"{n} scored {p}" for p, n in info["score_counts"].items())
        context.log(
            f"{info['rows']} answers ({counts}) on the scale {config['scale'][0]}.."
            f"{config['scale'][1]}; {info['vocabulary']} words in the vocabulary; fitted in "
            f"{info['seconds']:.1f} s"
        )
        context.log(
            f"ONNX parity on {trained.parity.rows} {config['parity']['checked_on']}: the same "
            f"score on every one, largest probability difference {trained.parity.max_prob_diff:.1e}"
        )
        context.log(
            f"Registered {trained.model_uri} (MLflow run {model.run_id}); ONNX sha256 "
            f"{config['onnx_sha256'][:12]}…"
        )
        context.metric("train_rows", info["rows"])
        context.metric("onnx_max_prob_diff", trained.parity.max_prob_diff)
        return {
            "model": {
                "model_version": model.pk,
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "test": inputs.get("test"),
            }
        }


class ValidateScorerParams(Params):
    min_qwk: float = Field(
        0.7,
        ge=0,
        le=1,
        description=(
            "Lowest acceptable agreement with the teachers' scores (quadratic weighted kappa: 1 "
            "is perfect, 0 is chance; 0.7 is the usual bar for automated scoring)."
        ),
        json_schema_extra={"threshold": "district", "label": "Minimum QWK"},
    )
    max_qwk_drop: float = Field(
        0.10,
        ge=0,
        le=1,
        description=(
            "Where a second teacher scored some answers: how far the scorer's QWK may fall "
            "below the two teachers' agreement with each other."
        ),
        json_schema_extra={"label": "Largest QWK drop below two teachers"},
    )
    max_smd: float = Field(
        0.15,
        gt=0,
        le=2,
        description=(
            "Largest allowed difference between the scorer's and the teachers' mean score, in "
            "standard deviations (standardized mean difference)."
        ),
        json_schema_extra={"label": "Largest mean score difference"},
    )
    second_score_column: str = Field(
        "score_2",
        max_length=200,
        description=(
            "The column with a second teacher's score, where one exists (empty cells: not "
            "double-scored); empty = no second teacher. Gives the human–human ceiling."
        ),
        json_schema_extra={"choices": "dataset_columns"},
    )
    min_ceiling_pairs: int = Field(
        20,
        ge=2,
        le=100_000,
        description=(
            "The ceiling is checked only when at least this many answers were double-scored."
        ),
        json_schema_extra={"unit": "answers"},
    )
    unsure_margin: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "An answer is 'unsure' when the scorer's two likeliest scores are this close in "
            "probability: those go to a teacher."
        ),
    )
    max_unsure_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "Largest share of unsure answers (sent to a teacher) accepted; 1 = only report it."
        ),
        json_schema_extra={"label": "Largest share sent to a teacher"},
    )


class ValidateScorerBlock(Block):
    kind = "validate_scorer"
    category = "model"
    label = "Validate short-answer scorer"
    help = (
        "Checks the scorer against the teachers on the held-out answers, the way e-rater is "
        "validated: quadratic weighted kappa (QWK), exact and adjacent agreement, the mean "
        "score difference, and, where a second teacher scored some answers, how far the "
        "scorer is below the two teachers' agreement. Reports the share of answers the scorer "
        "is unsure about (they go to a teacher). The run stops when a check misses its limit."
    )
    icon = "check-circle"
    Params = ValidateScorerParams
    inputs = (
        Port("model", (PortType.MODEL,), "Scoring model version"),
        Port("test", (PortType.DATASET,), "Held-out answers", required=False),
    )
    outputs = (output("model", PortType.MODEL, "Validated scorer"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml import short_answer
        from edumlops.registry import scoring

        ref = dict(inputs["model"])
        model = model_for(
            context,
            ref,
            step="Validate short-answer scorer",
            accepts=(TaskType.ORDINAL_SCORE,),
            instead={
                TaskType.BINARY_RISK: "Validate (validate_model)",
                TaskType.FORECAST: "Backtest forecast (backtest_gate)",
            },
        )
        frame, _ = holdout(context, ref, inputs.get("test"))
        if inputs.get("test"):
            ref["test"] = inputs["test"]
        try:
            config = scoring.config_of(model)
            second = params.second_score_column.strip() or None
            if second and second not in frame.columns:
                context.log(
                    f"No column '{second}' in the held-out answers: the human–human ceiling "
                    "is not checked."
                )
                second = None
            scale = (int(config["scale"][0]), int(config["scale"][1]))
            answers = short_answer.prepare_answers(
                frame,
                text=config["text_column"],
                score=config["score_column"],
                scale=scale,
                second_score=second,
            )
            context.progress(f"scoring {len(answers.texts)} held-out answers", 0.2)
            scores = scoring.load_scorer(model).score(answers.texts)
            gate = short_answer.scoring_gate(
                answers.scores,
                scores.scores,
                second_human=answers.second_scores,
                scale=scale,
                min_qwk=params.min_qwk,
                max_qwk_drop=params.max_qwk_drop,
                max_smd=params.max_smd,
                min_ceiling_pairs=params.min_ceiling_pairs,
            )
            unsure = short_answer.unsure_share(scores.probabilities, margin=params.unsure_margin)
        except (short_answer.ScoringError, scoring.ScorerError) as exc:
            raise BlockError(f"{model} cannot be validated on these answers: {exc}") from None
        failures = list(gate.failures)
        unsure_ok = unsure.share <= params.max_unsure_share
        unsure_sentence = unsure.message + (
            ""
            if params.max_unsure_share >= 1
            else (
                f" That is {'within' if unsure_ok else 'above'} the {params.max_unsure_share:.0%}"
                " allowed."
            )
        )
        if not unsure_ok:
            failures.append(unsure_sentence)
        agree, ceiling = gate.agreement, gate.ceiling
        metrics = {
            "qwk": agree.qwk,
            "exact_agreement": agree.exact,
            "adjacent_agreement": agree.adjacent,
            "correlation": agree.correlation,
            "smd": gate.smd.overall,
            "unsure_share": unsure.share,
        }
        if ceiling is not None:
            metrics["human_qwk"] = ceiling.qwk
            metrics["human_exact_agreement"] = ceiling.exact
        metrics = {k: v for k, v in metrics.items() if v == v}  # NaN: not measurable
        for key, value in metrics.items():
            context.metric(key, value)
        model.validation = {
            "kind": "scoring",
            "metrics": {k: scoring.clean(v) for k, v in metrics.items()},
            "agreement": {k: scoring.clean(v) for k, v in agree.to_dict().items()},
            "ceiling": None
            if ceiling is None
            else {k: scoring.clean(v) for k, v in ceiling.to_dict().items()},
            "smd": scoring.clean(gate.smd.overall),
            "unsure": {
                "share": unsure.share,
                "count": unsure.count,
                "margin": unsure.margin,
            },
            "limits": params.model_dump(),
            "reasons": gate.reasons + [unsure_sentence],
            "test_rows": len(answers.texts),
            "passed": not failures,
            "failures": failures,
        }
        model.save(update_fields=["validation"])
        mlflow_ready()
        tracking.log_json(model.run_id, "validation.json", model.validation)
        tracking.log_metrics(model.run_id, metrics, prefix="test_")
        for sentence in gate.reasons:
            context.log(sentence)
        context.log(unsure_sentence)
        if failures:
            raise StepStopped("; ".join(failures))
        return {"model": ref}


class TrainMasteryParams(Params):
    model_name: str = Field(
        "mastery",
        pattern=MODEL_NAME_PATTERN,
        description="Name of the model in the registry (lowercase letters, digits, dashes).",
    )
    student_column: str = Field(
        "student",
        min_length=1,
        max_length=200,
        description="The column that says whose answer it is.",
    )
    skill_column: str = Field(
        "skill",
        min_length=1,
        description="The column naming the skill (knowledge component) each answer practises.",
        max_length=200,
    )
    correct_column: str = Field(
        "",
        description=(
            "The column saying whether the answer was right: 1/0 or true/false, or the dataset's "
            "label with its positive class meaning right. Empty = the dataset's label if one "
            "is marked, else 'correct'."
        ),
        max_length=200,
    )
    order_column: str = Field(
        "",
        description=(
            "The column that orders each student's answers (a number or a date and time). "
            "Empty = the dataset's date/term column if one is marked, else 'order'."
        ),
        max_length=200,
    )
    forgets: bool = Field(
        False,
        description=(
            "Also learn how often students forget a mastered skill between answers. Off in "
            "classic BKT: mastery, once reached, stays."
        ),
    )
    num_fits: int = Field(
        5,
        ge=1,
        le=20,
        description=(
            "How many random starts the fit tries per skill, keeping the best: more is slower "
            "and less likely to stop at a poor fit."
        ),
    )
    min_answers: int = Field(
        30,
        ge=5,
        le=100_000,
        description="A skill needs at least this many answers; fewer stops the step, naming it.",
        json_schema_extra={"unit": "answers"},
    )
    seed: int = Field(0, ge=0, description="Random seed, so training can be repeated exactly.")


def answer_columns(frame: Any, roles: Roles, params: Any) -> dict[str, str]:
    """The answer log's columns for student, skill, correct and order: the block's parameters,
    else the dataset's roles (label, date/term), else the usual names. Refuses a log that lacks
    one, naming the parameter to change."""
    columns = {
        "student": params.student_column,
        "skill": params.skill_column,
        "correct": params.correct_column or roles.label or "correct",
        "order": params.order_column or roles.time or "order",
    }
    missing = [
        f"'{name}' ({role}: set {role}_column)"
        for role, name in columns.items()
        if name not in frame.columns
    ]
    if missing:
        raise BlockError(
            f"The answer log lacks the column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, frame.columns))}. An answer log has one row per answer with "
            "the student, the skill, whether it was right and its order."
        )
    return columns


def answers_for_bkt(frame: Any, roles: Roles, columns: dict[str, str]) -> Any:
    """The rows as BKT reads them: a correct column that is the dataset's label becomes 1 where
    its value is a positive class, and an order column of dates becomes timestamps."""
    import pandas as pd

    frame = frame.copy()
    correct, order = columns["correct"], columns["order"]
    if correct == roles.label and roles.positive:
        right = frame[correct].astype(str).isin({str(v) for v in roles.positive}).astype(float)
        frame[correct] = right.where(frame[correct].notna())
    elif frame[correct].dtype != bool:
        values = frame[correct]
        bad = values.notna() & ~pd.to_numeric(values, errors="coerce").isin([0, 1])
        if bad.any():
            shown = ", ".join(repr(v) for v in sorted(map(str, pd.unique(values[bad])))[:5])
            raise BlockError(
                f"Correctness (column '{correct}') must be 0 or 1 (or true/false); "
                f"{int(bad.sum())} answer(s) have {shown}. Mark '{correct}' as the dataset's "
                "label, with the value(s) meaning a right answer as its positive class, on the "
                "dataset's page; or set correct_column to a column of 0/1."
            )
    values = frame[order]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        try:
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        except (ValueError, TypeError):  # e.g. dates with and without a time zone
            parsed = pd.Series(pd.NaT, index=values.index)
        bad = parsed.isna() & values.notna()
        if bad.any():
            raise BlockError(
                f"The order column '{order}' must hold numbers or dates; {int(bad.sum())} "
                f"answer(s) have something else, e.g. {values[bad].iloc[0]!r}: pick another "
                "order_column or fix those rows."
            )
        frame[order] = parsed
    return frame


class TrainMasteryBlock(Block):
    kind = "train_mastery"
    category = "model"
    label = "Train mastery (BKT)"
    help = (
        "Learns, from an answer log (one row per answer: student, skill, right or wrong, and "
        "its order), how each skill is mastered with Bayesian Knowledge Tracing (pyBKT): the "
        "chance a student already knows it, learns it at each practice, guesses right without "
        "knowing it, slips while knowing it (and forgets it, if asked). Logs the numbers per "
        "skill to MLflow and registers a mastery model version, which adaptive practice uses "
        "to pick each student's next skill."
    )
    icon = "trending-up"
    Params = TrainMasteryParams
    inputs = (Port("answers", (PortType.DATASET,), "Answer log"),)
    outputs = (output("model", PortType.MODEL, "Mastery model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.registry import mastery

        ref = inputs["answers"]
        version = version_for(context, ref)
        context.progress("loading the answers", 0.0)
        frame, roles = rows_for(context, ref)
        columns = answer_columns(frame, roles, params)
        answers = answers_for_bkt(frame, roles, columns)
        context.log(
            f"{len(answers)} answers of {answers[columns['student']].nunique()} students on "
            f"{answers[columns['skill']].nunique()} skill(s); columns: "
            + ", ".join(f"{role} '{name}'" for role, name in columns.items())
        )
        job = mastery.MasteryJob(
            district=context.run.workflow.district,
            dataset_version=version,
            model_name=params.model_name,
            columns=columns,
            forgets=params.forgets,
            num_fits=params.num_fits,
            min_answers=params.min_answers,
            seed=params.seed,
            run_label=f"run {context.run_id} · {context.node_id}",
            workflow_run_id=context.run_id,
            started_by=context.run.started_by,
        )
        try:
            trained = mastery.train_and_register(job, answers, roles, context.progress)
        except mastery.MasteryError as exc:
            raise BlockError(f'"{version}" cannot be traced: {exc}') from None
        model = trained.model
        for name, p in sorted(trained.bkt.skills.items()):
            counts = trained.bkt.trained_on[name]
            context.log(
                f"'{name}' ({counts['answers']} answers, {counts['students']} students): prior "
                f"{p.prior:.2f}, learn {p.learn:.2f}, guess {p.guess:.2f}, slip {p.slip:.2f}"
                + (f", forget {p.forget:.2f}" if params.forgets else "")
            )
        degenerate = sorted(n for n, p in trained.bkt.skills.items() if p.degenerate)
        if degenerate:
            context.log(
                f"Degenerate fit for {len(degenerate)} skill(s): "
                f"{', '.join(map(repr, degenerate))}: guess >= 1 - slip, so a right answer "
                "there does not raise mastery (answers nearly all right, or items that do not "
                "measure the skill); adaptive practice never suggests them."
            )
        context.metric("degenerate_skills", len(degenerate))
        context.log(
            f"Fitted in {model.training['fit_seconds']:.1f} s (pyBKT "
            f"{model.training['library']['version']}, best of {params.num_fits} start(s))"
        )
        context.log(f"Registered {trained.model_uri} (MLflow run {model.run_id})")
        context.metric("answers", model.training["answers"])
        context.metric("students", model.training["students"])
        context.metric("skills", len(trained.bkt.skills))
        return {
            "model": {
                "model_version": model.pk,
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "answers": ref,
            }
        }


class ValidateMasteryParams(Params):
    test_share: float = Field(
        0.2,
        ge=0.05,
        le=0.5,
        description=(
            "Share of the students held out: the model is fitted again, with the same settings, "
            "on the other students' answers only, and predicts each held-out answer from the "
            "answers before it."
        ),
    )
    min_auc: float = Field(
        0.65,
        ge=0,
        le=1,
        description=(
            "Lowest acceptable AUC of the next-answer predictions on the held-out students "
            "(0.5 is chance; BKT usually reaches 0.65 to 0.8)."
        ),
        json_schema_extra={"threshold": "district", "label": "Minimum mastery AUC"},
    )
    max_ece: float = Field(
        0.1,
        ge=0,
        le=1,
        description=(
            "Highest acceptable calibration error (ECE): how far, on average, the predicted "
            "chance of a right answer is from the share of right answers (0.1 = 10 points)."
        ),
        json_schema_extra={"threshold": "district", "label": "Maximum calibration error"},
    )
    min_gain: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description=(
            "How much the AUC must exceed that of predicting each answer by its skill's share "
            "of right answers alone, which knows nothing of the student: 0 = at least as good."
        ),
        json_schema_extra={"threshold": "district", "label": "Mastery AUC gain over pass rates"},
    )
    bins: int = Field(10, ge=2, le=50, description="Bins of the calibration table.")
    seed: int = Field(0, ge=0, description="Random seed of the choice of held-out students.")


class ValidateMasteryBlock(Block):
    kind = "validate_mastery"
    category = "model"
    label = "Validate mastery"
    help = (
        "Checks a mastery model on students it never saw: a share of the students is held out, "
        "the model is fitted again on the others' answers with the same settings, and predicts "
        "each held-out answer from the student's answers before it. Records the AUC of those "
        "predictions, their calibration (ECE and a table) and the AUC per skill; the run stops "
        "when the AUC is below its minimum or the calibration error above its maximum."
    )
    icon = "check-circle"
    Params = ValidateMasteryParams
    inputs = (Port("model", (PortType.MODEL,), "Mastery model version"),)
    outputs = (output("model", PortType.MODEL, "Validated mastery model"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.knowledge_tracing_checks import validate_bkt

        ref = inputs["model"]
        model = model_for(
            context,
            ref,
            step="Validate mastery",
            accepts=(TaskType.MASTERY,),
            instead={
                TaskType.BINARY_RISK: "Validate",
                TaskType.FORECAST: "Backtest forecast",
            },
        )
        if not ref.get("answers"):
            raise BlockError(
                "The model reference carries no answer log: connect the output of Train mastery "
                "(BKT) to this block."
            )
        frame, roles = rows_for(context, ref["answers"])
        columns = dict(model.training.get("columns") or {})
        fit = dict(model.training.get("fit") or {})
        if sorted(columns) != ["correct", "order", "skill", "student"]:
            raise BlockError(
                f"{model} does not say which columns it was trained on: validate a model made "
                "by Train mastery (BKT)."
            )
        answers = answers_for_bkt(frame, roles, columns)
        train, test = _held_out(answers, columns, fit, params)
        context.progress(f"fitting again without {params.test_share:.0%} of the students", 0.1)
        try:
            _, report = validate_bkt(
                answers,
                **columns,
                test_share=params.test_share,
                seed=params.seed,
                bins=params.bins,
                forgets=bool(fit.get("forgets", False)),
                num_fits=int(fit.get("num_fits", 5)),
                min_answers=int(fit.get("min_answers", 30)),
            )
        except ValueError as exc:
            raise StepStopped(f"the validation cannot run: {exc}") from None
        numbers = {"auc": report.auc, "ece": report.ece, "log_loss": report.log_loss}
        numbers["brier"] = report.brier
        numbers["base_rate_auc"] = _base_rate_auc(train, test, columns)
        failures = mastery_failures(report, params, numbers["base_rate_auc"])
        for name, value in numbers.items():
            if value is not None:
                context.metric(name, value)
        model.validation = {
            "kind": "mastery",
            **report.to_dict(),
            "base_rate_auc": numbers["base_rate_auc"],
            "limits": params.model_dump(),
            "passed": not failures,
            "failures": failures,
        }
        model.save(update_fields=["validation"])
        mlflow_ready()
        tracking.log_json(model.run_id, "validation.json", model.validation)
        tracking.log_metrics(model.run_id, numbers, prefix="test_")
        split = report.split
        context.log(
            f"Fitted on {split['train_students']} students ({split['train_answers']} answers), "
            f"predicted {split['test_answers']} answers of {split['test_students']} held-out "
            f"students: AUC {_num(report.auc)}, ECE {report.ece:.3f}, log loss "
            f"{report.log_loss:.3f}, Brier {report.brier:.3f}"
        )
        if numbers["base_rate_auc"] is not None:
            context.log(
                f"Each skill's share of right answers alone gives AUC "
                f"{numbers['base_rate_auc']:.3f}: the students' earlier answers add "
                f"{_num(None if report.auc is None else report.auc - numbers['base_rate_auc'])}"
            )
        for skill in report.per_skill:
            context.log(
                f"'{skill['skill']}': {skill['answers']} answers, {skill['share_correct']:.0%} "
                f"right, {skill['mean_predicted']:.0%} predicted, AUC {_num(skill['auc'])}"
            )
        if failures:
            raise StepStopped("; ".join(failures))
        context.log(
            f"Passed: AUC at least {params.min_auc:g} and {params.min_gain:g} above the skills' "
            f"pass rates, ECE at most {params.max_ece:g}"
        )
        return {"model": ref}


def _held_out(
    answers: Any, columns: dict[str, str], fit: dict[str, Any], params: ValidateMasteryParams
) -> tuple[Any, Any]:
    """The answers of the students kept and of those held out (validate_bkt's split). Stops the
    gate when holding students out leaves a skill too few answers to fit again (a skill few
    students practised), naming the skills and what to change."""
    from edumlops.ml.knowledge_tracing_checks import split_students

    try:
        train, test = split_students(
            answers, student=columns["student"], test_share=params.test_share, seed=params.seed
        )
    except ValueError as exc:
        raise StepStopped(f"the validation cannot run: {exc}") from None
    need = int(fit.get("min_answers", 30))
    counts = train[columns["skill"]].astype(str).value_counts()
    short = {
        str(skill): int(counts.get(str(skill), 0))
        for skill in sorted(answers[columns["skill"]].astype(str).unique())
        if counts.get(str(skill), 0) < need
    }
    if short:
        listed = ", ".join(f"'{skill}' ({n} answers)" for skill, n in short.items())
        raise StepStopped(
            f"without the {params.test_share:.0%} of students held out, too few answers are left "
            f"to fit again (at least {need} per skill, as in training): {listed}. Hold out fewer "
            "students (test_share), collect more answers on those skills, or train without them."
        )
    return train, test


def _base_rate_auc(train: Any, test: Any, columns: dict[str, str]) -> float | None:
    """The AUC of predicting each held-out answer by its skill's share of right answers among
    the students kept: what knowing the student's earlier answers must beat."""
    from sklearn.metrics import roc_auc_score

    skill, correct = columns["skill"], columns["correct"]
    rate = train.groupby(train[skill].astype(str))[correct].mean()
    y = test[correct].astype(int).to_numpy()
    if not 0 < y.sum() < len(y):
        return None
    return float(roc_auc_score(y, test[skill].astype(str).map(rate).to_numpy()))


def mastery_failures(
    report: Any, params: ValidateMasteryParams, base_rate_auc: float | None = None
) -> list[str]:
    """A sentence per limit the held-out predictions miss, saying what it means."""
    failures = []
    if report.auc is None:
        failures.append(
            f"the {report.answers} held-out answers are all "
            f"{'right' if report.share_correct == 1 else 'wrong'}, so the AUC cannot be "
            "measured: hold out more students (test_share) or collect more varied answers"
        )
    elif report.auc < params.min_auc:
        failures.append(
            f"AUC {report.auc:.3f} is below the minimum {params.min_auc:g}: the model tells "
            "held-out students' right answers from wrong ones too poorly to choose their "
            "practice (check the skill tagging, or collect more answers per skill)"
        )
    if (
        report.auc is not None
        and base_rate_auc is not None
        and report.auc - base_rate_auc < params.min_gain
    ):
        failures.append(
            f"AUC {report.auc:.3f} does not beat each skill's share of right answers alone "
            f"(AUC {base_rate_auc:.3f}) by the minimum gain {params.min_gain:g}: the students' "
            "earlier answers add too little to choose their practice"
        )
    if report.ece > params.max_ece:
        failures.append(
            f"calibration error (ECE) {report.ece:.3f} is above the maximum "
            f"{params.max_ece:g}: its chances of a right answer are off by "
            f"{report.ece:.0%} on average, so its mastery estimates cannot be taken at face value"
        )
    return failures
