"""Rolling out: a registered model version as input, pilot schools, promotion to the district,
rollback, and freeze windows. The rules (which schools pilot, when a pilot may be promoted) live
in edumlops.deployments.rollout, which the API and the deployments page call too; these blocks
map their parameters onto it, ask for approval and wait.

Every rollout to a wider scope waits for district staff to approve it unless the workflow's
owner turned `approval_required` off; the step's log then says that no approval was required.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Literal

from django.utils import timezone
from pydantic import Field

from edumlops.core import clock
from edumlops.datasets.models import load_reference
from edumlops.deployments import rollout
from edumlops.deployments.models import Deployment
from edumlops.deployments.services import resolve
from edumlops.fleet import bundles, sync
from edumlops.ml.naming import MODEL_NAME_PATTERN
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import CalendarPeriod
from workflows.blocks.base import (
    Block,
    BlockError,
    Context,
    Params,
    Port,
    PortType,
    StepStopped,
    WaitFor,
    ask_approval,
    output,
)
from workflows.blocks.data import pseudonym_key, version_for
from workflows.blocks.modelling import model_for
from workflows.models import Run

ANY = tuple(PortType)


def _deployment(context: Context, ref: Any) -> Deployment:
    if not isinstance(ref, dict) or "deployment" not in ref:
        raise BlockError("The input is not a deployment: connect a Pilot rollout block.")
    found = Deployment.objects.filter(
        pk=ref["deployment"], district=context.run.workflow.district
    ).first()
    if found is None:
        raise BlockError(f"Deployment {ref['deployment']} no longer exists.")
    return found


class RegisteredModelParams(Params):
    model_name: str = Field(
        "at-risk",
        pattern=MODEL_NAME_PATTERN,
        description="The model's name in the registry (as on the Models page).",
    )
    alias: Literal["challenger", "champion"] = Field(
        "challenger", description="Take the version that holds this alias now."
    )


class RegisteredModelBlock(Block):
    kind = "registered_model"
    category = "deploy"
    label = "Registered model"
    help = (
        "Picks the model version that holds an alias (challenger or champion) in the registry, "
        "so a rollout workflow can start from a model trained earlier."
    )
    icon = "archive"
    Params = RegisteredModelParams
    inputs = (Port("input", ANY, "Start", required=False),)
    outputs = (output("model", PortType.MODEL, "Model version"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.ml import tracking

        district = context.run.workflow.district
        name = f"{district.slug}-{params.model_name}"
        mlflow_ready()
        version = tracking.version_with_alias(name, params.alias)
        model = ModelVersion.objects.filter(district=district, name=name, version=version).first()
        if version is None or model is None:
            raise BlockError(
                f"No version of '{params.model_name}' holds the {params.alias} alias: train one "
                "or set the alias on the model's page."
            )
        context.log(f"{model} holds {params.alias}")
        return {"model": {"model_version": model.pk, "name": model.name, "version": model.version}}


class AlertedDeploymentBlock(Block):
    kind = "alerted_deployment"
    category = "deploy"
    label = "Deployment of the alerted school"
    help = (
        "In a workflow started by an alert: the deployment that answers for the school the "
        "alert is about — connect it to Rollback to roll that school's version back."
    )
    icon = "crosshair"
    needs_school = True
    inputs = (Port("start", (PortType.TRIGGER,), "Start (from 'Start on an alert')"),)
    outputs = (output("deployment", PortType.DEPLOYMENT, "Deployment"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        conf = context.run.conf or {}
        district = context.run.workflow.district
        school = district.schools.filter(pk=conf.get("school")).first()
        if conf.get("alert") is None and school is not None:  # fired by hand for a school
            deployment = resolve(school)
            if deployment is None:
                raise BlockError(f"{school} has no model deployed.")
            context.log(f"No alert (started by hand) at {school}: deployment #{deployment.pk}")
            return {"deployment": {"deployment": deployment.pk, "alert": None}}
        alert = Alert.objects.filter(pk=conf.get("alert"), district=district).first()
        if alert is None or alert.school is None:
            raise BlockError(
                "This run was not started by an alert about a school: use 'Start on an alert'."
            )
        deployment = resolve(alert.school)
        if deployment is None:
            raise BlockError(f"{alert.school} has no model deployed.")
        context.log(
            f"Alert {alert.pk} ({alert.cause}) at {alert.school}: deployment #{deployment.pk}"
        )
        return {"deployment": {"deployment": deployment.pk, "alert": alert.pk}}


class FreezeParams(Params):
    period_kinds: list[Literal["testing", "break"]] = Field(
        default=["testing"],
        description="No rollout during these kinds of calendar period (testing weeks, breaks).",
    )
    period_names: list[str] = Field(
        default=[], description="Also no rollout during periods with these names."
    )


class FreezeWindowBlock(Block):
    kind = "freeze_window"
    category = "deploy"
    label = "Freeze window"
    help = (
        "Stops the run when today falls in a frozen period of the district's calendar, such as "
        "a testing week, so nothing changes for students then. Put it before a rollout."
    )
    icon = "snowflake"
    Params = FreezeParams
    inputs = (Port("input", ANY, "Input"),)
    outputs = (output("clear", PortType.SIGNAL, "Not frozen"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:

        district = context.run.workflow.district
        today = clock.today()
        frozen = CalendarPeriod.objects.filter(
            district=district, start__lte=today, end__gte=today
        ).filter(kind__in=params.period_kinds) | CalendarPeriod.objects.filter(
            district=district, start__lte=today, end__gte=today, name__in=params.period_names
        )
        period = frozen.order_by("end").first()
        if period is not None:
            raise StepStopped(
                f"frozen: {period.name} runs until {period.end:%d %b %Y}; run this again after it"
            )
        context.log(f"{today:%d %b %Y} is outside every frozen period")
        return {"clear": {"date": today.isoformat(), **inputs.get("input", {})}}


class PilotParams(Params):
    selection: Literal["names", "tag", "stratified"] = Field(
        "stratified",
        description=(
            "names: the schools listed; tag: every school with the tag; stratified: a sample "
            "that covers small and large, urban and rural schools."
        ),
    )
    schools: list[str] = Field(default=[], description="School names or codes (for names).")
    tag: str = Field("pilot", max_length=60, description="The school tag (for tag).")
    sample_size: int = Field(3, ge=1, le=50, description="How many schools in a stratified sample.")
    seed: int = Field(0, ge=0, description="Random seed of the stratified sample.")
    approval_required: bool = Field(
        True,
        description="Wait for district staff to approve before the pilot starts. Only the "
        "workflow's owner should turn this off; the run then records that none was required.",
    )
    quorum: int = Field(1, ge=1, le=10, description="How many district staff must approve.")

    def choice(self) -> rollout.SchoolChoice:
        return rollout.SchoolChoice(
            self.selection, tuple(self.schools), self.tag, self.sample_size, self.seed
        )


class PilotRolloutBlock(Block):
    kind = "pilot_rollout"
    category = "deploy"
    label = "Pilot rollout"
    help = (
        "Puts the model version on a few pilot schools — chosen by name, by tag, or as a sample "
        "covering small and large, urban and rural schools — after district staff approve. "
        "The other schools keep the district's version."
    )
    icon = "flag"
    Params = PilotParams
    inputs = (Port("model", (PortType.MODEL,), "Model version"),)
    outputs = (output("deployment", PortType.DEPLOYMENT, "Pilot deployment"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        district = context.run.workflow.district
        proposal = context.proposal or _pilot_proposal(context, inputs, params)
        approved = ask_approval(
            context, proposal, quorum=params.quorum, required=params.approval_required
        )
        wanted = {s["id"]: s["name"] for s in approved["schools"]}
        found = rollout.pilot_as_approved(
            district, approved["model_version"], approved["model"], approved.get("bias_outcome"),
            wanted,
        )  # fmt: skip
        if found.changes:
            raise BlockError(
                f"What was approved ({approved['summary']}) can no longer be applied as approved: "
                f"{'; '.join(found.changes)}. Nothing was deployed; run the workflow again to ask "
                "anew."
            )
        names = ", ".join(s.name for s in found.schools)
        if context.proposal and _chosen_ids(district, params) != set(wanted):
            context.log(
                "The school selection would pick other schools today; the approved "
                f"{names} are used."
            )  # said, not applied: the approved schools are what goes out
        try:
            pilot = rollout.roll_out(
                found.model,
                scope="pilot",
                schools=found.schools,
                user=context.run.started_by,
                reason=f"workflow run {context.run_id}, step {context.node_id}",
                run=context.run,
            )
        except rollout.DeploymentError as exc:
            raise BlockError(str(exc)) from None
        context.log(f"Pilot #{pilot.pk}: {found.model} at {names}")
        context.metric("pilot_schools", len(found.schools))
        return {"deployment": {"deployment": pilot.pk, "model_version": found.model.pk}}


def _pilot_proposal(context: Context, inputs: dict[str, Any], params: PilotParams) -> dict:
    """What district staff are asked to approve: this model version at these schools."""
    model = model_for(context, inputs["model"])
    try:
        schools = rollout.choose_schools(context.run.workflow.district, params.choice())
    except rollout.DeploymentError as exc:
        raise BlockError(str(exc)) from None
    if not schools:
        raise BlockError(f"No school was chosen ({params.selection}): change the selection.")
    return {
        "summary": f"Piloting {model} at {', '.join(s.name for s in schools)}",
        "action": "pilot",
        "model_version": model.pk,
        "model": str(model),
        "bias_outcome": model.bias_outcome,
        "schools": [{"id": s.pk, "name": s.name} for s in schools],
    }


def _chosen_ids(district: Any, params: PilotParams) -> set[int]:
    """The schools the selection picks today (none when it no longer can)."""
    try:
        return {s.pk for s in rollout.choose_schools(district, params.choice())}
    except rollout.DeploymentError:
        return set()


class PromoteParams(Params):
    min_days_in_pilot: int = Field(
        rollout.DEFAULT_MIN_PILOT_DAYS,
        ge=0,
        le=365,
        description="The pilot must have run at least this many days.",
    )
    require_pilot_outcomes: bool = Field(
        True,
        description="Require labelled rows from the pilot schools (e.g. end-of-term outcomes, "
        "through a Dataset block) and check the model does as well there as in validation.",
    )
    pilot_metric: Literal["auc", "recall"] = Field(
        "auc", description="The metric compared between the pilot and validation."
    )
    max_drop: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="How much lower than in validation the pilot's metric may be.",
    )
    approval_required: bool = Field(
        True,
        description="Wait for district staff to approve the promotion. Only the workflow's "
        "owner should turn this off; the run then records that none was required.",
    )
    quorum: int = Field(1, ge=1, le=10, description="How many district staff must approve.")


class PromoteBlock(Block):
    kind = "promote_to_district"
    category = "deploy"
    label = "Promote to district"
    help = (
        "Makes the pilot's model version the whole district's when its conditions hold: the "
        "pilot has run its minimum days, no alert is open on a pilot school, the model does as "
        "well on the pilot schools' outcomes as in validation (within the margin), and district "
        "staff approve. The pilot ends as promoted."
    )
    icon = "trending-up"
    Params = PromoteParams
    inputs = (
        Port("deployment", (PortType.DEPLOYMENT,), "Pilot deployment"),
        Port("outcomes", (PortType.DATASET,), "Pilot outcomes (labelled rows)", required=False),
    )
    outputs = (output("deployment", PortType.DEPLOYMENT, "District deployment"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        pilot = _deployment(context, inputs["deployment"])
        if pilot.scope != "pilot" or not pilot.active:
            raise BlockError(f"Deployment #{pilot.pk} is not an active pilot ({pilot.status}).")
        age = rollout.pilot_age(pilot, params.min_days_in_pilot)
        schools = list(pilot.schools.all())
        if context.proposal is None:  # asked once: after approval they are not judged anew
            _check_conditions(context, pilot, schools, age, inputs.get("outcomes"), params)
        proposal = context.proposal or {
            "summary": f"Promoting {pilot.model_version} to the district",
            "action": "promote",
            "pilot": pilot.pk,
            "model_version": pilot.model_version_id,
            "model": str(pilot.model_version),
            "schools": [{"id": s.pk, "name": s.name} for s in schools],
        }
        approved = ask_approval(
            context, proposal, quorum=params.quorum, required=params.approval_required
        )
        changes = []
        if pilot.model_version_id != approved["model_version"]:
            changes.append(f"the pilot now serves {pilot.model_version}")
        if context.proposal is not None:
            changes += [u.condition for u in rollout.checks_unmet(pilot, schools)]
        if changes:
            raise BlockError(
                f"What was approved ({approved['summary']}) can no longer be applied as "
                f"approved: {'; '.join(changes)}. Nothing was promoted; resolve it and run the "
                "workflow again."
            )
        try:
            whole = rollout.promote(
                pilot,
                min_days=params.min_days_in_pilot,
                user=context.run.started_by,
                reason=f"workflow run {context.run_id}: pilot ran {age.days:.1f} days",
                run=context.run,
            )
        except rollout.DeploymentError as exc:
            raise BlockError(str(exc)) from None
        context.log(f"{whole.model_version} is the district's version (deployment #{whole.pk})")
        return {"deployment": {"deployment": whole.pk, "model_version": whole.model_version_id}}


def _check_conditions(
    context: Context,
    pilot: Any,
    schools: list[Any],
    age: rollout.PilotAge,
    outcomes: Any,
    params: PromoteParams,
) -> None:
    """Before asking: wait for the minimum days (holding no worker), stop on an unmet check
    (an open alert), then compare the pilot's outcomes with validation."""
    if not age.enough:
        raise WaitFor(
            f"waiting for the pilot's minimum days: it has run {age.days:.1f} of its "
            f"{params.min_days_in_pilot} days; it is checked again from {age.due_text} on",
            check_after=min(age.seconds_left, 3600),
        )
    unmet = rollout.checks_unmet(pilot, schools)
    if unmet:
        raise StepStopped(" ".join(u.sentence("run this again") for u in unmet))
    if outcomes:
        _judge_outcomes(context, pilot, outcomes, params)
    elif params.require_pilot_outcomes:
        raise StepStopped(
            "no outcomes from the pilot schools to compare with validation: connect a "
            "Dataset block with their labelled rows to 'Pilot outcomes', or turn "
            "'require pilot outcomes' off"
        )


def _judge_outcomes(context: Context, pilot: Any, ref: Any, params: PromoteParams) -> None:
    """Stop when the pilot's metric on its schools' labelled rows is more than `max_drop`
    below the one measured in validation."""
    version_for(context, ref)
    frame, roles = load_reference(ref, pseudonym_key())
    try:
        verdict = rollout.judge_outcomes(pilot, frame, roles, params.pilot_metric, params.max_drop)
    except rollout.DeploymentError as exc:
        raise BlockError(str(exc)) from None
    if verdict.observed is not None:
        context.metric(f"pilot_{params.pilot_metric}", verdict.observed)
    if not verdict.held:
        raise StepStopped(verdict.message)
    context.log(verdict.message)


class RollbackParams(Params):
    reason: str = Field(
        "automated rollback", min_length=1, max_length=500, description="Kept in the audit trail."
    )


class RollbackBlock(Block):
    kind = "rollback"
    category = "deploy"
    label = "Rollback"
    help = (
        "Puts the scope of the incoming deployment back on its last known good version in one "
        "step (a pilot simply ends: its schools return to the district's version). Used by "
        "automated interventions, e.g. after a drift alert."
    )
    icon = "rotate-ccw"
    Params = RollbackParams
    inputs = (
        Port("deployment", (PortType.DEPLOYMENT,), "Deployment"),
        Port("after", ANY, "Only after (e.g. a review gate)", required=False),
    )
    outputs = (output("deployment", PortType.DEPLOYMENT, "What answers now"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        deployment = _deployment(context, inputs["deployment"])
        alert = inputs["deployment"].get("alert") or (context.run.conf or {}).get("alert")
        cause = f", alert {alert}" if alert else ""
        try:
            now = rollout.rollback(
                deployment,
                user=context.run.started_by,
                reason=f"{params.reason} (workflow run {context.run_id}{cause})",
            )
        except rollout.DeploymentError as exc:
            raise BlockError(str(exc)) from None
        if now is None:
            context.log("Rolled back; no version is active on this scope now.")
            return {"deployment": {"deployment": None}}
        context.log(f"Rolled back #{deployment.pk}; {now.model_version} answers now (#{now.pk})")
        return {"deployment": {"deployment": now.pk, "model_version": now.model_version_id}}


class EdgeSyncParams(Params):
    min_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the target schools' edge nodes that must confirm (serve the new "
        "version) before the run goes on: 1 = all of them, 0.8 = four in five.",
    )
    timeout_minutes: float = Field(
        30,
        ge=0,
        le=240,
        description="How long to wait for the edge nodes to confirm; 0 = publish and don't wait.",
        json_schema_extra={"unit": "minutes"},
    )
    poll_seconds: int = Field(
        5,
        ge=1,
        le=60,
        description="How often to look whether they confirmed.",
        json_schema_extra={"unit": "seconds"},
    )


class EdgeSyncBlock(Block):
    kind = "edge_sync"
    category = "deploy"
    label = "Sync to school servers"
    help = (
        "Publishes the deployment's model bundle to the edge servers of its schools (the pilot "
        "schools, or every school on the district's version) and waits until a chosen share of "
        "them serve it. At the timeout the step fails naming the servers that did not confirm "
        "and when each was last heard from. Schools without an edge server are not waited for."
    )
    icon = "server"
    Params = EdgeSyncParams
    inputs = (Port("deployment", (PortType.DEPLOYMENT,), "Deployment"),)
    outputs = (output("deployment", PortType.DEPLOYMENT, "Deployment (synced)"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = inputs["deployment"]
        deployment = _deployment(context, ref)
        if not deployment.active:
            raise BlockError(
                f"Deployment #{deployment.pk} was {deployment.get_status_display()} while "
                "waiting for the edge servers: they now follow the version that replaced it."
                if "deadline" in context.state
                else f"Deployment #{deployment.pk} is {deployment.get_status_display()}: there "
                "is nothing to sync; connect the block that makes the deployment."
            )
        model = deployment.model_version
        schools, notes = sync.target_schools(deployment)
        for note in notes:
            context.log(note)
        nodes = sync.nodes_at(schools)
        context.metric("edge_nodes", len(nodes))
        if not nodes:
            context.log(
                f"No edge server is registered at the {len(schools)} target school(s): nothing "
                "to sync (register servers on the Edge page)."
            )
            return {"deployment": ref}
        if "deadline" not in context.state:  # the first check publishes
            try:
                context.log(sync.publish(deployment, model, nodes, context.run_id, context.node_id))
            except bundles.BundleUnavailable as exc:
                raise BlockError(str(exc)) from None
        if params.timeout_minutes == 0:
            context.log("Not waiting for them to confirm (timeout 0)")
            return {"deployment": ref}
        self._wait_for(context, params, nodes, model)
        return {"deployment": ref}

    @staticmethod
    def _wait_for(context: Context, params: Params, nodes: list[Any], model: Any) -> None:
        """Return once enough nodes serve the model; else WaitFor (holding no worker) until the
        deadline kept in the step's state, then fail naming the laggards."""
        need = sync.needed(params.min_share, nodes)
        now_ts = time.time()
        deadline = context.state.setdefault("deadline", now_ts + params.timeout_minutes * 60)
        done = sync.confirmed(nodes, model)
        stage = f"{len(done)} of {len(nodes)} edge servers serve {model} ({need} needed)"
        context.progress(stage, len(done) / need if need else 1.0)
        if len(done) < need:
            if now_ts >= deadline:
                raise BlockError(
                    sync.laggards(
                        nodes, done, model, need, params.timeout_minutes, params.min_share
                    )
                )
            if Run.objects.filter(pk=context.run_id, status=Run.Status.CANCELLED).exists():
                raise StepStopped("the run was cancelled while waiting for the edge servers")
            raise WaitFor(
                f"waiting for edge servers: {stage}; gives up at "
                f"{timezone.localtime(dt.datetime.fromtimestamp(deadline, dt.UTC)):%H:%M:%S}",
                check_after=max(0.0, min(params.poll_seconds, deadline - now_ts)),
            )
        context.metric("edge_nodes_confirmed", len(done))
        context.log(
            f"{len(done)} of {len(nodes)} edge server(s) serve {model} "
            f"(needed {need}: min share {params.min_share:g})"
        )
