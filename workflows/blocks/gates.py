"""Gates: let the run go on, stop it, or pause it for people to decide."""

from __future__ import annotations

import operator
from typing import Any, Literal

from pydantic import Field

from workflows.blocks.base import (
    ANY,
    Block,
    Context,
    Params,
    Port,
    PortType,
    StepStopped,
    WaitForApproval,
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
        approvals = context.approvals()
        if len(approvals) >= params.quorum:
            names = ", ".join(approvals)
            context.log(f"Approved by {names}")
            return {"approved": {"approvers": approvals}}
        raise WaitForApproval(
            f"waiting for {params.quorum - len(approvals)} more approval(s) from district staff"
        )
