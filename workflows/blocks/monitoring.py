"""Monitoring blocks: drift, performance, device latency, forecast error, a mastery model's
parameters and short answers. Each is its typed parameters plus one call into
`edumlops.monitoring.checks`, where the rules live; the block only turns the result into the
step's log lines, metrics and report."""

from __future__ import annotations

from typing import Any

from edumlops.datasets.models import load_reference
from edumlops.monitoring import checks
from workflows.blocks.base import ANY, Block, BlockError, Context, Params, Port, PortType, output
from workflows.blocks.data import pseudonym_key, rows_for, version_for


# The checks' parameter models, as block parameters (same fields, schema and validation).
class DriftParams(checks.DriftParams, Params):
    pass


class PerformanceParams(checks.PerformanceParams, Params):
    pass


class LatencyParams(checks.LatencyParams, Params):
    pass


class ForecastErrorParams(checks.ForecastErrorParams, Params):
    pass


class MasteryParams(checks.MasteryParams, Params):
    pass


class AnswerDriftParams(checks.AnswerDriftParams, Params):
    pass


class DriftMonitorBlock(Block):
    kind = "drift_monitor"
    category = "monitor"
    label = "Drift monitor"
    help = (
        "Checks whether what each school's model sees has changed: every feature and the "
        "predictions, on the bins fixed at training time, against last year's same weeks of "
        "term (or the training data, or the previous window). Raises an alert naming the "
        "school and the feature; small schools are pooled or reported as insufficient data."
    )
    icon = "activity"
    Params = DriftParams
    inputs = (Port("input", ANY, "Start", required=False),)
    outputs = (output("report", PortType.REPORT, "Drift report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        try:
            result = checks.check_drift(
                context.run.workflow.district, params, run_id=context.run_id
            )
        except checks.CheckError as exc:
            raise BlockError(str(exc)) from exc
        for line in result.log:
            context.log(line)
        context.metric("groups_checked", len(result.groups))
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}


class PerformanceMonitorBlock(Block):
    kind = "performance_monitor"
    category = "monitor"
    label = "Performance monitor"
    help = (
        "When the real outcomes arrive (e.g. end-of-term results uploaded as a dataset), scores "
        "them with each school's model and compares recall, precision and calibration with "
        "validation, per school and per sensitive group. Raises an alert where the model "
        "misses clearly more at-risk students than it did in validation."
    )
    icon = "target"
    Params = PerformanceParams
    inputs = (Port("outcomes", (PortType.DATASET,), "Outcomes (labelled rows)"),)
    outputs = (output("report", PortType.REPORT, "Performance report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        version_for(context, inputs["outcomes"])
        frame, roles = load_reference(inputs["outcomes"], pseudonym_key())
        try:
            result = checks.check_performance(
                context.run.workflow.district, frame, roles, params, run_id=context.run_id
            )
        except checks.CheckError as exc:
            raise BlockError(str(exc)) from exc
        for line in result.log:
            context.log(line)
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}


class DeviceLatencyMonitorBlock(Block):
    kind = "device_latency_monitor"
    category = "monitor"
    label = "Device latency monitor"
    help = (
        "Watches how fast predictions are answered, per school and hardware profile: an old "
        "laptop and a new server each have their own normal (the median p95 of the baseline "
        "days), and only a slowdown against that normal raises an alert."
    )
    icon = "cpu"
    Params = LatencyParams
    inputs = (Port("input", ANY, "Start", required=False),)
    outputs = (output("report", PortType.REPORT, "Latency report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        result = checks.check_latency(context.run.workflow.district, params)
        for line in result.log:
            context.log(line)
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}


class ForecastErrorMonitorBlock(Block):
    kind = "forecast_error_monitor"
    category = "monitor"
    label = "Forecast error monitor"
    help = (
        "When a term's actual enrollment arrives (the enrollment history with the new term's "
        "counts added, or only the new counts: school, grade, year, term, enrollment), "
        "compares it with what the forecast "
        "said: the error per school and grade, MAPE, and how many counts fell inside the "
        "forecast's range. A school whose counts fall outside the range or miss by more than "
        "the allowed error gets an alert naming the grades and terms."
    )
    icon = "trending-up"
    Params = ForecastErrorParams
    inputs = (
        Port("model", (PortType.MODEL,), "Forecast model version"),
        Port("actuals", (PortType.DATASET,), "Actual enrollment"),
    )
    outputs = (output("report", PortType.REPORT, "Forecast error report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.task_types import TaskType
        from workflows.blocks.modelling import model_for

        model = model_for(
            context,
            inputs["model"],
            step="Forecast error monitor",
            accepts=(TaskType.FORECAST,),
            instead={
                TaskType.BINARY_RISK: "Performance monitor",
                TaskType.ORDINAL_SCORE: "Answer drift monitor",
                TaskType.MASTERY: "Mastery monitor",
            },
        )
        version = version_for(context, inputs["actuals"])
        frame, _ = rows_for(context, inputs["actuals"])
        context.log(f"Actual enrollment: {version} ({len(frame):,} rows)")
        try:
            result = checks.check_forecast_error(
                context.run.workflow.district, model, frame, params
            )
        except checks.CheckError as exc:
            raise BlockError(str(exc)) from exc
        for line in result.log:
            context.log(line)
        summary = result.summary
        context.metric("compared", summary["compared"])
        context.metric("flagged", summary["flagged"])
        if summary.get("mape") is not None:
            context.metric("mape", round(summary["mape"], 4))
        if summary.get("coverage") is not None:
            context.metric("coverage", round(summary["coverage"], 4))
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}


class MasteryMonitorBlock(Block):
    kind = "mastery_monitor"
    category = "monitor"
    label = "Mastery monitor"
    help = (
        "After a knowledge-tracing model is retrained, compares its per-skill BKT parameters "
        "(prior, learn, guess, slip, forget) with the previous version of the same model and "
        "flags those that moved more than their tolerance, and checks each skill's items: too "
        "easy (guess too high), too hard (slip too high or nothing learnt) or a degenerate fit. "
        "Each flagged skill gets an alert naming the parameter, old and new value and what to do."
    )
    icon = "activity"
    Params = MasteryParams
    inputs = (Port("model", (PortType.MODEL,), "Mastery model version"),)
    outputs = (output("report", PortType.REPORT, "Mastery report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.task_types import TaskType
        from workflows.blocks.modelling import model_for

        model = model_for(
            context,
            inputs["model"],
            step="Mastery monitor",
            accepts=(TaskType.MASTERY,),
            instead={
                TaskType.BINARY_RISK: "Drift monitor or Performance monitor",
                TaskType.ORDINAL_SCORE: "Answer drift monitor",
                TaskType.FORECAST: "Forecast error monitor",
            },
        )
        try:
            result = checks.check_mastery(context.run.workflow.district, model, params)
        except checks.CheckError as exc:
            raise BlockError(str(exc)) from exc
        for line in result.log:
            context.log(line)
        context.metric("parameters_drifted", result.drifted)
        context.metric("skills_flagged", len(result.skills))
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}


class AnswerDriftMonitorBlock(Block):
    kind = "answer_drift_monitor"
    category = "monitor"
    label = "Answer drift monitor"
    help = (
        "Compares new short answers with those the scorer was trained on: their length in "
        "words, the share of their words the scorer never saw, and the share of answers the "
        "scorer is unsure about (its two most likely scores close). Each past its limit raises "
        "an alert; the unsure answers are queued on the Answers to rate page for a teacher to "
        "score, and their scores can go back into the scorer's training answers."
    )
    icon = "activity"
    Params = AnswerDriftParams
    inputs = (
        Port("model", (PortType.MODEL,), "Short-answer scorer version"),
        Port("answers", (PortType.DATASET,), "New answers"),
    )
    outputs = (output("report", PortType.REPORT, "Answer drift report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml.task_types import TaskType
        from workflows.blocks.modelling import model_for

        model = model_for(
            context,
            inputs["model"],
            step="Answer drift monitor",
            accepts=(TaskType.ORDINAL_SCORE,),
            instead={
                TaskType.BINARY_RISK: "Drift monitor",
                TaskType.FORECAST: "Forecast error monitor",
                TaskType.MASTERY: "Mastery monitor",
            },
        )
        version = version_for(context, inputs["answers"])
        frame, _ = rows_for(context, inputs["answers"])
        context.log(f"New answers: {version} ({len(frame):,} rows)")
        try:
            result = checks.check_answer_drift(
                context.run.workflow.district, model, frame, params, dataset_version=version
            )
        except checks.CheckError as exc:
            raise BlockError(str(exc)) from exc
        for line in result.log:
            context.log(line)
        context.metric("answers", result.answers)
        names = {"length": "length_psi", "vocabulary": "new_word_rise", "unsure": "unsure_share"}
        for finding in result.findings:
            if finding.value is not None:
                context.metric(names[finding.kind], finding.value)
        context.metric("sent_to_teachers", result.sent_to_teachers)
        context.metric("new_alerts", result.new_alerts)
        return {"report": result.report()}
