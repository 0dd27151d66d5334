"""Gates: let the run go on, stop it, or pause it for people to decide."""

from __future__ import annotations

import hashlib
import json
import operator
from typing import Any, Literal

from pydantic import Field

from workflows.blocks.base import (
    ANY,
    Block,
    BlockError,
    Context,
    Params,
    Port,
    PortType,
    StepStopped,
    WaitForApproval,
    ask_approval,
    output,
)

OPERATORS = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


class ConditionParams(Params):
    metric: str = Field(
        "recall",
        min_length=1,
        max_length=100,
        description="The name of a metric an earlier block produced, e.g. recall.",
    )
    operator: Literal[">=", ">", "<=", "<", "==", "!="] = Field(
        ">=", description="How the metric must compare with the threshold to pass."
    )
    threshold: float = Field(0.7, description="The value to compare the metric with.")


class ConditionGate(Block):
    kind = "condition_gate"
    category = "gate"
    label = "Check a number"
    help = (
        "Lets the run go on only when a metric from an earlier block compares well with a "
        "threshold (for example recall at least 0.7); otherwise the run stops here."
    )
    icon = "filter"
    Params = ConditionParams
    inputs = (Port("input", (PortType.REPORT, PortType.SIGNAL), "Input"),)
    outputs = (output("passed", PortType.SIGNAL, "Passed"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        metrics = context.upstream_metrics()
        if params.metric not in metrics:
            available = ", ".join(sorted(metrics)) or "none"
            raise StepStopped(
                f"no earlier block produced the metric '{params.metric}' (available: {available})"
            )
        value = metrics[params.metric]
        verdict = OPERATORS[params.operator](value, params.threshold)
        context.metric(params.metric, value)
        comparison = f"{params.metric} = {value:g} {params.operator} {params.threshold:g}"
        if not verdict:
            raise StepStopped(f"{comparison} does not hold")
        context.log(f"Passed: {comparison}")
        return {"passed": {"metric": params.metric, "value": value}}


class ApprovalParams(Params):
    role: Literal["district_staff"] = Field(
        "district_staff", description="Who may approve: district staff of the workflow's district."
    )
    quorum: int = Field(
        1, ge=1, le=10, description="How many different people must approve before the run goes on."
    )
    timeout_hours: float = Field(
        0,
        ge=0,
        le=24 * 30,
        description="Reject automatically when nobody decided within this time (0 = wait forever).",
        json_schema_extra={"unit": "hours"},
    )
    instructions: str = Field(
        "", max_length=2000, description="What approvers should check before they approve."
    )


class ApprovalGate(Block):
    kind = "approval_gate"
    category = "gate"
    label = "Ask for approval"
    help = (
        "Pauses the run until district staff approve it (with a comment). A rejection ends the "
        "run. Use it before anything reaches students."
    )
    icon = "user-check"
    Params = ApprovalParams
    inputs = (Port("input", ANY, "Input", many=True),)
    outputs = (output("approved", PortType.SIGNAL, "Approved"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        proposal = context.proposal or {
            "summary": params.instructions or "Let the run go on past this point",
            "action": "continue",
            "inputs": inputs.get("input") or [],
        }
        ask_approval(context, proposal, message="Going on", quorum=params.quorum)
        return {"approved": {"approvers": context.approvals()}}


class BiasGateParams(Params):
    metrics: list[
        Literal["false_negative_rate", "selection_rate", "recall", "false_positive_rate"]
    ] = Field(
        default=["false_negative_rate"],
        min_length=1,
        description=(
            "What must be similar across groups. False-negative rate (at-risk students the "
            "model misses) comes first; selection rate (share flagged), recall and "
            "false-positive rate (students flagged who were fine) are there too."
        ),
    )
    rule: Literal["max_difference", "min_ratio"] = Field(
        "max_difference",
        description=(
            "Largest gap between groups (max difference): the best and the worst group may "
            "differ by at most the limit; smallest ratio between groups (min ratio): the worst "
            "group's value divided by the best may be no less than the limit."
        ),
    )
    max_difference: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Largest allowed gap between groups (for max_difference).",
        json_schema_extra={"threshold": "district", "label": "Bias-gate gap"},
    )
    min_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Smallest allowed ratio between groups (for min_ratio).",
        json_schema_extra={"threshold": "district", "label": "Bias-gate ratio"},
    )
    min_group_size: int = Field(
        30,
        ge=1,
        le=10_000,
        description=(
            "A group's rate is judged only when the group has at least this many of the "
            "students the rate is computed on (its at-risk students for missed at-risk "
            "students); smaller groups are shown with their numbers but not judged."
        ),
        json_schema_extra={
            "threshold": "district",
            "label": "Smallest group the bias gate judges",
            "unit": "students",
        },
    )
    intersections: bool = Field(
        True, description="Also check pairs of attributes (e.g. low SES and English learner)."
    )
    if_inconclusive: Literal["block", "ask_approval"] = Field(
        "ask_approval",
        description=(
            "When the evidence is not clear either way (small groups, or an interval that "
            "straddles the limit): stop the run, or pause it for district staff to decide."
        ),
    )
    max_score_difference: float = Field(
        0.10,
        gt=0,
        le=2,
        description=(
            "Scoring models only: in every group, how far the scorer's mean score may be from "
            "the teachers' mean score on the same answers, in standard deviations of the "
            "teachers' scores (standardized mean difference; 0.10 is the e-rater criterion)."
        ),
        json_schema_extra={"label": "Largest score difference in a group"},
    )
    bootstrap_samples: int = Field(
        200, ge=20, le=2000, description="Resamples behind the confidence intervals on the gaps."
    )
    seed: int = Field(0, ge=0, description="Random seed of the resampling.")


class BiasGate(Block):
    kind = "bias_gate"
    category = "gate"
    label = "Bias gate"
    help = (
        "Compares the model's errors across groups of each sensitive attribute (and pairs of "
        "them) on held-out rows, with fairlearn. Passes, fails, or is inconclusive when groups "
        "are too small or the confidence interval straddles the limit; you choose whether "
        "inconclusive stops the run or asks district staff to approve. The report is kept on "
        "the model version. For a scoring model (short answers) it compares, in each group, "
        "the scorer's mean score with the teachers' on the same held-out answers."
    )
    icon = "scale"
    Params = BiasGateParams
    inputs = (Port("model", (PortType.MODEL,), "Model version"),)
    outputs = (output("model", PortType.MODEL, "Model that passed"),)
    panel_template = "workflows/panels/fairness.html"

    @classmethod
    def panel_context(cls, run: Any, step: Any) -> dict[str, Any]:
        """The bias report of each model the run works on, once the gate ran."""
        from workflows.models import models_of

        if step.status in ("queued", "skipped", "blocked"):
            return {"fairness": []}
        return {"fairness": [m for m in models_of(run) if m.bias_report]}

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.fairness import BiasRule, bias_report, bias_report_from_counts
        from edumlops.ml.task_types import TaskType
        from edumlops.ml.training import binary_target
        from workflows.blocks.modelling import holdout, model_for

        model = model_for(
            context,
            inputs["model"],
            step="Bias gate",
            accepts=(TaskType.BINARY_RISK, TaskType.ORDINAL_SCORE),
            instead={
                TaskType.MASTERY: "Validate mastery (errors per group of students are not "
                "compared for mastery models; it checks the predictions for held-out students)",
            },
        )
        if context.proposal is not None:  # approved after an inconclusive check: no new report
            return self._approved(context, model, inputs)
        if model.task_type == TaskType.ORDINAL_SCORE:
            return self._decide(
                context, model, inputs, self._score_report(context, model, inputs, params), params
            )
        limit = params.max_difference if params.rule == "max_difference" else params.min_ratio
        rules = [BiasRule(m, params.rule, limit) for m in params.metrics]
        fed = ((model.training or {}).get("federated") or {}).get("evaluation") or {}
        if fed.get("groups") and not inputs["model"].get("test"):
            # trained across schools: judged on the schools' summed counts per group, no rows
            try:
                report = bias_report_from_counts(
                    fed["groups"],
                    rules,
                    min_group_size=params.min_group_size,
                    n_boot=params.bootstrap_samples,
                    seed=params.seed,
                )
            except ValueError as exc:
                raise StepStopped(str(exc)) from None
            context.log(
                "Judged on the confusion counts the schools returned for their own held-out "
                "students (intersections need joint counts, which schools do not send)"
            )
            return self._decide(context, model, inputs, report, params)
        frame, roles = holdout(context, inputs["model"])
        sensitive = [c for c in roles.sensitive if c in frame.columns]
        if not sensitive:
            raise StepStopped(
                "no sensitive attribute is marked on the dataset (or Minimise data removed them):"
                " mark at least one on the dataset's page"
            )
        y_true = binary_target(frame[roles.label], roles.positive)
        y_pred = (model.predict_proba(frame) >= model.threshold).astype(int)
        report = bias_report(
            y_true,
            y_pred,
            frame[sensitive],
            rules,
            min_group_size=params.min_group_size,
            intersections=params.intersections,
            n_boot=params.bootstrap_samples,
            seed=params.seed,
        )
        return self._decide(context, model, inputs, report, params)

    @staticmethod
    def _score_report(context: Context, model: Any, inputs: dict[str, Any], params: Any) -> Any:
        """A scoring model's report: the scorer's mean score against the teachers' per group."""
        from edumlops.ml import short_answer
        from edumlops.ml.score_fairness import score_bias_report
        from edumlops.registry import scoring
        from workflows.blocks.modelling import holdout

        frame, roles = holdout(context, inputs["model"])
        sensitive = [c for c in roles.sensitive if c in frame.columns]
        if not sensitive:
            raise StepStopped(
                "no sensitive attribute is marked on the answers' dataset: mark at least one "
                "(e.g. home language) on the dataset's page"
            )
        try:
            config = scoring.config_of(model)
            answers = short_answer.prepare_answers(
                frame,
                text=config["text_column"],
                score=config["score_column"],
                scale=(int(config["scale"][0]), int(config["scale"][1])),
            )
            context.progress(f"scoring {len(answers.texts)} held-out answers", 0.2)
            machine = scoring.load_scorer(model).score(answers.texts).scores
            report = score_bias_report(
                machine,
                answers.scores,
                frame[sensitive],
                max_score_difference=params.max_score_difference,
                min_group_size=params.min_group_size,
                intersections=params.intersections,
                n_boot=params.bootstrap_samples,
                seed=params.seed,
            )
        except (short_answer.ScoringError, scoring.ScorerError) as exc:
            raise BlockError(f"{model} cannot be checked on these answers: {exc}") from None
        context.log(
            "Scoring model: the scorer's mean score against the teachers' "
            f"({config['score_column']}) on {len(answers.texts)} held-out answers, per group of "
            f"{', '.join(sensitive)}; overall {report.settings['overall_smd']:+.3f} SD"
        )
        for group in report.groups:
            context.metric(
                f"smd_{group.attribute}_{group.group}".replace(" ", ""),
                group.metrics["score_difference"],
            )
        return report

    def _decide(
        self, context: Context, model: Any, inputs: dict[str, Any], report: Any, params: Any
    ) -> Any:
        from edumlops.ml import tracking
        from edumlops.registry.models import mlflow_ready

        model.bias_report = {**report.to_dict(), "threshold": model.threshold}
        model.bias_outcome = report.outcome
        model.save(update_fields=["bias_report", "bias_outcome"])
        mlflow_ready()
        tracking.log_json(model.run_id, "bias_report.json", model.bias_report)
        for check in report.checks:
            context.log(f"{check.outcome}: {check.reason}")
            if check.value is not None:
                context.metric(f"bias_{check.metric}_{check.attribute}", check.value)
        if report.outcome == "fail":
            raise StepStopped(f"bias check failed: {report.summary}")
        if report.outcome == "inconclusive":
            if params.if_inconclusive == "block":
                raise StepStopped(f"bias check inconclusive: {report.summary}")
            raise WaitForApproval(
                f"bias check inconclusive: {report.summary} District staff may approve "
                "after reading the report on the model's page.",
                proposal={
                    "summary": f"Going on with {model} although its bias check is "
                    "inconclusive: the steps after the bias gate run with this model as it is; "
                    "rejecting ends the run",
                    "action": "accept_inconclusive_bias",
                    "model_version": model.pk,
                    "model": str(model),
                    "report_sha256": report_digest(model.bias_report),
                },
            )
        return {"model": inputs["model"]}

    @staticmethod
    def _approved(context: Context, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        """Staff approved the report they were shown: go on only if it is still that report."""
        shown = context.proposal or {}
        if model.pk != shown.get("model_version"):
            raise BlockError(
                f"The approval was for {shown.get('model')}, but the input is now {model}: "
                "run the workflow again."
            )
        if report_digest(model.bias_report) != shown.get("report_sha256"):
            raise BlockError(
                f"{model}'s bias report changed after it was shown for approval (it was "
                "recomputed since): nothing was approved for the new report; run the workflow "
                "again to check it."
            )
        approvers = ", ".join(context.approvals())
        context.log(f"Inconclusive, approved by {approvers} on the report they were shown")
        return {"model": inputs["model"]}


def report_digest(report: dict[str, Any]) -> str:
    """What identifies the report that approvers were shown."""
    return hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode()).hexdigest()


class BacktestParams(Params):
    origins: int = Field(
        6,
        ge=1,
        le=40,
        description=(
            "How many past registration cycles to replay: at each, the model is trained on the "
            "history up to that term only and its forecast compared with what came."
        ),
        json_schema_extra={"unit": "registration cycles"},
    )
    horizon: int = Field(
        0,
        ge=0,
        le=24,
        description="Terms ahead judged at each cycle; 0 = as many as the model forecasts.",
        json_schema_extra={"unit": "terms"},
    )
    max_ratio: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "The model's scaled error (MASE) divided by the seasonal naive's must be below "
            "this: 1 = just beat last year's count for the same term; 0.9 = be 10% better."
        ),
        json_schema_extra={"threshold": "district", "label": "Largest MASE ratio to the baseline"},
    )


class BacktestGate(Block):
    kind = "backtest_gate"
    category = "gate"
    label = "Backtest forecast"
    help = (
        "Replays past registration cycles, one at a time: the forecast method is trained on "
        "the history up to that cycle and its forecast compared with the enrollment that came, "
        "and so is the seasonal naive (last year's count for the same term). MAPE (the average "
        "error as a share of the count) and MASE (the error scaled by each series' usual "
        "change) are recorded; the run goes on only when the model's MASE beats the seasonal "
        "naive's."
    )
    icon = "activity"
    Params = BacktestParams
    inputs = (Port("model", (PortType.MODEL,), "Forecast model version"),)
    outputs = (output("model", PortType.MODEL, "Forecast that beat the baseline"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from dataclasses import asdict

        from edumlops.ml import tracking
        from edumlops.ml.forecast import LABELS, backtest, forecast_gate
        from edumlops.ml.task_types import TaskType
        from edumlops.registry.models import mlflow_ready
        from workflows.blocks.data import rows_for
        from workflows.blocks.modelling import model_for

        ref = inputs["model"]
        model = model_for(
            context,
            ref,
            step="Backtest forecast",
            accepts=(TaskType.FORECAST,),
            instead={
                TaskType.BINARY_RISK: "Validate",
                TaskType.ORDINAL_SCORE: "Validate short-answer scorer (validate_scorer)",
                TaskType.MASTERY: "the knowledge-tracing validation",
            },
        )
        config = (model.training or {}).get("forecast") or {}
        method = config.get("method", model.algorithm)
        if method == "seasonal_naive":
            raise BlockError(
                f"{model} is the seasonal naive itself, the baseline the backtest compares "
                "with: train the forecast with ETS or gradient boosting (method 'ets' or "
                "'gbm') to gate it."
            )
        if not ref.get("history"):
            raise BlockError(
                "The model reference carries no enrollment history: connect the output of "
                "Train enrollment forecast to this block."
            )
        history, _ = rows_for(context, ref["history"])
        horizon = params.horizon or int(config.get("horizon") or 0) or None
        context.progress(f"replaying {params.origins} registration cycles", 0.05)
        try:
            result = backtest(
                history,
                methods=[method],
                origins=params.origins,
                horizon=horizon,
                level=float(config.get("level", 0.8)),
                by=config.get("by", "grade"),
                calibrate=int(config.get("calibrate") or 0),
            )
            gate = forecast_gate(result, method=method)
        except ValueError as exc:
            raise StepStopped(f"the backtest cannot run: {exc}") from None
        passed = gate.passed and gate.ratio < params.max_ratio
        reason = gate.reason
        if gate.passed and not passed:
            reason += (
                f" The ratio {gate.ratio:.2f} is not below the limit {params.max_ratio:g}: it "
                "does not beat the baseline by enough."
            )
        numbers = {
            "mase": gate.mase,
            "baseline_mase": gate.baseline_mase,
            "mase_ratio": gate.ratio,
            "mape": gate.mape,
            "baseline_mape": gate.baseline_mape,
            "coverage": gate.coverage,
            "raw_coverage": float(result.metrics(method)["raw_coverage"]),
        }
        for name, value in numbers.items():
            if value == value:  # not NaN
                context.metric(name, value)
        model.validation = {
            "kind": "backtest",
            **result.as_dict(),
            "gate": {
                **{k: (v if v == v else None) for k, v in asdict(gate).items()},
                "raw_coverage": numbers["raw_coverage"] if result.calibrate else None,
                "max_ratio": params.max_ratio,
            },
            "passed": passed,
            "failures": [] if passed else [reason],
        }
        model.save(update_fields=["validation"])
        mlflow_ready()
        tracking.log_json(model.run_id, "backtest.json", model.validation)
        tracking.log_metrics(
            model.run_id, {k: v for k, v in numbers.items() if v == v}, prefix="backtest_"
        )
        context.log(
            f"{len(result.origins)} origin(s), {result.origins[0]} to {result.origins[-1]}, "
            f"{result.horizon} term(s) ahead: {LABELS[method]} MAPE {gate.mape:.2%}, MASE "
            f"{gate.mase:.3f}; seasonal naive MAPE {gate.baseline_mape:.2%}, MASE "
            f"{gate.baseline_mase:.3f}; {result.level:.0%} interval coverage {gate.coverage:.0%}"
            + (
                f" (calibrated on the {result.calibrate} terms before each origin; the model's "
                f"own ranges: {numbers['raw_coverage']:.0%})"
                if result.calibrate
                else ""
            )
        )
        for note in result.notes:
            context.log(note)
        if not passed:
            raise StepStopped(f"backtest failed: {reason}")
        context.log(f"Passed: {reason}")
        return {"model": ref}
