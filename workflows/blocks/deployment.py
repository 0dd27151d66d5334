"""Rolling out: a registered model version as input, pilot schools, promotion to the district,
rollback, and freeze windows. The work lives in edumlops.deployments.services; these blocks pick
the schools, check the conditions and ask for approval.

Every rollout to a wider scope waits for district staff to approve it unless the workflow's
owner turned `approval_required` off; the step's log then says that no approval was required.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Literal

from django.utils import timezone
from pydantic import Field

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

ANY = tuple(PortType)


def _deployment(context: Context, ref: Any) -> Any:
    from edumlops.deployments.models import Deployment

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
        pattern=r"^[a-z0-9][a-z0-9-]{0,60}$",
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
        from edumlops.registry.models import ModelVersion, mlflow_ready

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
    inputs = (Port("start", (PortType.TRIGGER,), "Start (from 'Start on an alert')"),)
    outputs = (output("deployment", PortType.DEPLOYMENT, "Deployment"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.deployments.services import resolve
        from edumlops.monitoring.models import Alert

        alert_id = (context.run.conf or {}).get("alert")
        alert = Alert.objects.filter(pk=alert_id, district=context.run.workflow.district).first()
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
        from edumlops.core import clock
        from edumlops.schools.models import CalendarPeriod

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


def choose_schools(district: Any, params: PilotParams) -> list[Any]:
    schools = list(district.schools.order_by("name"))
    if params.selection == "names":
        wanted = {s.strip().lower() for s in params.schools if s.strip()}
        chosen = [s for s in schools if s.name.lower() in wanted or s.code.lower() in wanted]
        found = {s.name.lower() for s in chosen} | {s.code.lower() for s in chosen}
        unknown = sorted(wanted - found)
        if unknown:
            raise BlockError(
                f"No school named {', '.join(unknown)} in {district}: use names or codes from "
                "the district page."
            )
        return chosen
    if params.selection == "tag":
        return [s for s in schools if params.tag in (s.tags or [])]
    cells: dict[tuple[str, str], list[Any]] = {}
    for s in schools:
        cells.setdefault((s.size_band, s.locality), []).append(s)
    rng = random.Random(params.seed)
    picks = [rng.choice(group) for _, group in sorted(cells.items())]
    rng.shuffle(picks)
    return sorted(picks[: params.sample_size], key=lambda s: s.name)


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
        from edumlops.deployments import services

        proposal = context.proposal or _pilot_proposal(context, inputs, params)
        approved = ask_approval(
            context, proposal, quorum=params.quorum, required=params.approval_required
        )
        model, schools = _approved_pilot(context, approved, params)
        names = ", ".join(s.name for s in schools)
        try:
            pilot = services.roll_out(
                model,
                scope="pilot",
                schools=schools,
                user=context.run.started_by,
                reason=f"workflow run {context.run_id}, step {context.node_id}",
                run=context.run,
            )
        except services.DeploymentError as exc:
            raise BlockError(str(exc)) from None
        context.log(f"Pilot #{pilot.pk}: {model} at {names}")
        context.metric("pilot_schools", len(schools))
        return {"deployment": {"deployment": pilot.pk, "model_version": model.pk}}


def _pilot_proposal(context: Context, inputs: dict[str, Any], params: PilotParams) -> dict:
    """What district staff are asked to approve: this model version at these schools."""
    from workflows.blocks.modelling import model_for

    model = model_for(context, inputs["model"])
    schools = choose_schools(context.run.workflow.district, params)
    if not schools:
        raise BlockError(f"No school was chosen ({params.selection}): change the selection.")
    names = ", ".join(s.name for s in schools)
    return {
        "summary": f"Piloting {model} at {names}",
        "action": "pilot",
        "model_version": model.pk,
        "model": str(model),
        "bias_outcome": model.bias_outcome,
        "schools": [{"id": s.pk, "name": s.name} for s in schools],
    }


def _approved_pilot(
    context: Context, proposal: dict[str, Any], params: PilotParams
) -> tuple[Any, list[Any]]:
    """The model version and schools of the approved proposal, as they are now — or a failure
    that says what changed since the approval. Never another choice."""
    from edumlops.registry.models import ModelVersion

    district = context.run.workflow.district
    model = ModelVersion.objects.filter(pk=proposal["model_version"], district=district).first()
    changes = []
    if model is None:
        changes.append(f"{proposal['model']} was deleted")
    elif model.bias_outcome == "fail" and proposal.get("bias_outcome") != "fail":
        changes.append(f"{model} has failed a bias check since")
    wanted = {s["id"]: s["name"] for s in proposal["schools"]}
    found = {s.pk: s for s in district.schools.filter(pk__in=wanted)}
    gone = [name for pk, name in wanted.items() if pk not in found]
    if gone:
        changes.append(
            f"{', '.join(gone)} no longer {'is' if len(gone) == 1 else 'are'} a school"
            f" of {district}"
        )
    if changes:
        raise BlockError(
            f"What was approved ({proposal['summary']}) can no longer be applied as approved: "
            f"{'; '.join(changes)}. Nothing was deployed; run the workflow again to ask anew."
        )
    schools = [found[pk] for pk in wanted]
    if not context.proposal:
        return model, schools
    try:  # said, not applied: the approved schools are what goes out
        today = {s.pk for s in choose_schools(district, params)}
    except BlockError:
        today = set()
    if today != set(wanted):
        context.log(
            "The school selection would pick other schools today; the approved "
            f"{', '.join(s.name for s in schools)} are used."
        )
    return model, schools


class PromoteParams(Params):
    min_days_in_pilot: int = Field(
        14, ge=0, le=365, description="The pilot must have run at least this many days."
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
        from edumlops.core import clock
        from edumlops.deployments import services

        pilot = _deployment(context, inputs["deployment"])
        if pilot.scope != "pilot" or not pilot.active:
            raise BlockError(f"Deployment #{pilot.pk} is not an active pilot ({pilot.status}).")
        days = (clock.now() - pilot.created_at).total_seconds() / 86400
        if context.proposal is None and days < params.min_days_in_pilot:
            due = pilot.created_at - clock.offset() + dt.timedelta(days=params.min_days_in_pilot)
            left = (params.min_days_in_pilot - days) * 86400
            raise WaitFor(
                f"waiting for the pilot's minimum days: it has run {days:.1f} of its "
                f"{params.min_days_in_pilot} days; it is checked again from "
                f"{timezone.localtime(due):%d %b %Y %H:%M} on",
                check_after=min(left, 3600),
            )
        from edumlops.monitoring.models import open_alerts

        schools = list(pilot.schools.all())
        if context.proposal is None:
            _check_alerts(schools)
            if inputs.get("outcomes"):
                _pilot_performance(context, pilot, schools, inputs["outcomes"], params)
            elif params.require_pilot_outcomes:
                raise StepStopped(
                    "no outcomes from the pilot schools to compare with validation: connect a "
                    "Dataset block with their labelled rows to 'Pilot outcomes', or turn "
                    "'require pilot outcomes' off"
                )
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
        alerts = list(open_alerts(schools)[:5])
        if alerts and context.proposal is not None:
            changes.append("alert(s) opened on the pilot: " + "; ".join(str(a) for a in alerts))
        if changes:
            raise BlockError(
                f"What was approved ({approved['summary']}) can no longer be applied as "
                f"approved: {'; '.join(changes)}. Nothing was promoted; resolve it and run the "
                "workflow again."
            )
        try:
            whole = services.promote(
                pilot,
                user=context.run.started_by,
                reason=f"workflow run {context.run_id}: pilot ran {days:.1f} days",
                run=context.run,
            )
        except services.DeploymentError as exc:
            raise BlockError(str(exc)) from None
        context.log(f"{whole.model_version} is the district's version (deployment #{whole.pk})")
        return {"deployment": {"deployment": whole.pk, "model_version": whole.model_version_id}}


def _check_alerts(schools: list[Any]) -> None:
    from edumlops.monitoring.models import open_alerts

    alerts = list(open_alerts(schools)[:5])
    if alerts:
        raise StepStopped(
            "open alert(s) on the pilot: "
            + "; ".join(str(a) for a in alerts)
            + ". Resolve them, then run this again."
        )


def _pilot_performance(
    context: Context, pilot: Any, schools: list[Any], ref: Any, params: PromoteParams
) -> None:
    """Score the pilot schools' labelled rows with the pilot's model; stop when its metric is
    more than `max_drop` below the one measured in validation."""
    from edumlops.datasets.models import load_reference
    from edumlops.ml import evaluation
    from edumlops.ml.training import binary_target
    from workflows.blocks.data import pseudonym_key, version_for

    version_for(context, ref)
    frame, roles = load_reference(ref, pseudonym_key())
    if not roles.label:
        raise BlockError("The pilot outcomes have no label marked: mark it on the dataset page.")
    if roles.school and roles.school in frame:
        names = {s.name for s in schools} | {s.code for s in schools}
        frame = frame[frame[roles.school].astype(str).isin(names)]
    if len(frame) < 30:
        raise StepStopped(
            f"only {len(frame)} labelled row(s) from the pilot schools: too few to judge; wait "
            "for more outcomes"
        )
    model = pilot.model_version
    y = binary_target(frame[roles.label], roles.positive)
    pilot_metrics = evaluation.evaluate(y, model.predict_proba(frame), threshold=model.threshold)
    validated = ((model.validation or {}).get("metrics") or {}).get(params.pilot_metric)
    observed = pilot_metrics.get(params.pilot_metric)
    if validated is None or observed is None:
        raise StepStopped(
            f"{params.pilot_metric} cannot be compared: the model was not validated, or the "
            "pilot's rows hold one class only"
        )
    context.metric(f"pilot_{params.pilot_metric}", observed)
    verdict = (
        f"{params.pilot_metric} on {len(frame)} pilot rows {observed:.3f} vs {validated:.3f} in "
        f"validation"
    )
    if validated - observed > params.max_drop:
        raise StepStopped(f"{verdict}: more than {params.max_drop:g} lower")
    context.log(f"{verdict}: within {params.max_drop:g}")


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
        from edumlops.deployments import services

        deployment = _deployment(context, inputs["deployment"])
        alert = inputs["deployment"].get("alert") or (context.run.conf or {}).get("alert")
        cause = f", alert {alert}" if alert else ""
        try:
            now = services.rollback(
                deployment,
                user=context.run.started_by,
                reason=f"{params.reason} (workflow run {context.run_id}{cause})",
            )
        except services.DeploymentError as exc:
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
        import math
        import time

        from edumlops.deployments.services import resolve
        from edumlops.fleet.models import EdgeNode
        from workflows.models import Run

        ref = inputs["deployment"]
        deployment = _deployment(context, ref)
        if not deployment.active and "deadline" in context.state:
            raise BlockError(
                f"Deployment #{deployment.pk} was {deployment.get_status_display()} while "
                "waiting for the edge servers: they now follow the version that replaced it."
            )
        if not deployment.active:
            raise BlockError(
                f"Deployment #{deployment.pk} is {deployment.get_status_display()}: there is "
                "nothing to sync; connect the block that makes the deployment."
            )
        model = deployment.model_version
        if deployment.scope == "pilot":
            schools = list(deployment.schools.order_by("name"))
        else:
            schools = []
            for school in deployment.district.schools.order_by("name"):
                answering = resolve(school)
                if answering is not None and answering.pk == deployment.pk:
                    schools.append(school)
                else:
                    context.log(f"{school} is on its own pilot: its servers are not waited for")
        nodes = list(
            EdgeNode.objects.filter(school__in=schools, revoked_at__isnull=True)
            .select_related("school")
            .order_by("school__name", "name")
        )
        context.metric("edge_nodes", len(nodes))
        first_check = "deadline" not in context.state
        if not nodes:
            context.log(
                f"No edge server is registered at the {len(schools)} target school(s): nothing "
                "to sync (register servers on the Edge page)."
            )
            return {"deployment": ref}
        if first_check:
            _publish_to_nodes(context, deployment, model, nodes)
        need = math.ceil(params.min_share * len(nodes) - 1e-9)
        if params.timeout_minutes == 0:
            context.log("Not waiting for them to confirm (timeout 0)")
            return {"deployment": ref}
        # The wait holds no worker: each check either ends the step or asks to be run again
        # after poll_seconds; the deadline is kept in the step's state between checks.
        now_ts = time.time()
        deadline = context.state.setdefault("deadline", now_ts + params.timeout_minutes * 60)
        confirmed = set(
            EdgeNode.objects.filter(pk__in=[n.pk for n in nodes], active_version=model).values_list(
                "pk", flat=True
            )
        )
        stage = f"{len(confirmed)} of {len(nodes)} edge servers serve {model} ({need} needed)"
        context.progress(stage, len(confirmed) / need if need else 1.0)
        if len(confirmed) < need:
            if now_ts >= deadline:
                raise BlockError(_laggards(nodes, confirmed, model, need, params))
            if Run.objects.filter(pk=context.run_id, status=Run.Status.CANCELLED).exists():
                raise StepStopped("the run was cancelled while waiting for the edge servers")
            raise WaitFor(
                f"waiting for edge servers: {stage}; gives up at "
                f"{timezone.localtime(dt.datetime.fromtimestamp(deadline, dt.UTC)):%H:%M:%S}",
                check_after=max(0.0, min(params.poll_seconds, deadline - now_ts)),
            )
        context.metric("edge_nodes_confirmed", len(confirmed))
        context.log(
            f"{len(confirmed)} of {len(nodes)} edge server(s) serve {model} "
            f"(needed {need}: min share {params.min_share:g})"
        )
        return {"deployment": ref}


def _publish_to_nodes(context: Context, deployment: Any, model: Any, nodes: list[Any]) -> None:
    from edumlops.fleet import bundles
    from edumlops.fleet.models import EdgeEvent

    try:
        bundles.files(model)  # the server's copy that the nodes download
    except bundles.BundleUnavailable as exc:
        raise BlockError(str(exc)) from None
    now = timezone.now()
    EdgeEvent.objects.bulk_create(
        [
            EdgeEvent(
                node=node,
                client_id=f"published:{context.run_id}:{context.node_id}:{model.pk}"[:80],
                kind=EdgeEvent.Kind.PUBLISHED,
                model_version=model,
                detail=f"workflow run {context.run_id}: deployment #{deployment.pk}",
                at=now,
            )
            for node in nodes
        ],
        ignore_conflicts=True,  # a step taken over publishes once
    )
    context.log(
        f"Published {model} to {len(nodes)} edge server(s) at "
        f"{len({n.school_id for n in nodes})} school(s)"
    )


def _laggards(nodes: list[Any], confirmed: set[int], model: Any, need: int, params: Any) -> str:
    """The timeout message: who did not confirm, when each was last heard from, and why if it
    said so (a rejected bundle)."""
    from django.conf import settings

    now = timezone.now()
    late = []
    for node in nodes:
        if node.pk in confirmed:
            continue
        node.refresh_from_db()
        contact = node.contact(now, int(settings.EDGE_POLL_SECONDS))
        _, state = node.sync_state(model, list(node.events.all()[:5]))
        said = "" if state in ("behind", "waiting for first contact") else f"; {state}"
        seen = "never contacted" if node.last_contact is None else f"last contact {contact['last']}"
        late.append(f"{node.name} at {node.school} ({seen}{said})")
    return (
        f"Only {len(confirmed)} of {len(nodes)} edge server(s) serve {model} after "
        f"{params.timeout_minutes:g} min (needed {need}, min share {params.min_share:g}). Not "
        f"confirmed: {'; '.join(late)}. Check that these servers are on and online, or lower "
        "the share or raise the timeout."
    )
