"""Triggers: what starts a run. Each has one output, `start`, and no inputs."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from celery.schedules import crontab
from django.utils import timezone
from pydantic import Field, field_validator

from workflows.blocks.base import Block, Context, Firing, Params, PortType, TriggerScan, output


class ManualTrigger(Block):
    kind = "manual_trigger"
    category = "trigger"
    label = "Start by hand"
    help = (
        "Starts the workflow when someone presses Run. Values given with the run (for example "
        "a metric to test a condition with) are passed on to the next blocks."
    )
    icon = "play"
    is_trigger = True
    starts_by_hand = True
    outputs = (output("start", PortType.TRIGGER, "Start"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        conf = context.run.conf or {}
        for name, value in (conf.get("metrics") or {}).items():
            context.metric(name, value)
        context.log(f"Started by {context.run.started_by_label}")
        return {"start": {"run": context.run_id, "conf": conf}}


class ScheduleParams(Params):
    cron: str = Field(
        "0 6 * * 1",
        description=(
            "When to run, as a cron line: minute hour day-of-month month day-of-week "
            "(e.g. '0 6 * * 1' is every Monday at 06:00)."
        ),
        json_schema_extra={"format": "cron"},
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(
                f"a cron line has 5 fields (minute hour day month weekday), this has {len(fields)}"
            )
        minute, hour, day, month, weekday = fields
        try:
            crontab(minute, hour, day_of_week=weekday, day_of_month=day, month_of_year=month)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid cron line: {exc}") from None
        return value


class ScheduleTrigger(Block):
    kind = "schedule_trigger"
    category = "trigger"
    label = "Start on a schedule"
    help = "Starts the workflow on a repeating schedule (celery beat), e.g. every Monday morning."
    icon = "clock"
    is_trigger = True
    Params = ScheduleParams
    outputs = (output("start", PortType.TRIGGER, "Start"),)

    @classmethod
    def due(cls, params: Params, scan: TriggerScan) -> list[Firing]:
        """One firing per minute of the window that the cron line matches (local time)."""
        minute, hour, day, month, weekday = params.cron.split()
        cron = crontab(minute, hour, day_of_week=weekday, day_of_month=day, month_of_year=month)
        since = max(scan.since, scan.saved_at)  # not for ticks before the schedule existed
        tick = timezone.localtime(since).replace(second=0, microsecond=0)
        firings = []
        while tick <= scan.now:
            if tick > since and _cron_matches(cron, tick):
                firings.append(Firing(f"cron-{tick:%Y-%m-%dT%H:%M}"))
            tick += dt.timedelta(minutes=1)
        return firings

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        if not self.fired_by_hand(context):
            context.log(f"Started by the schedule '{params.cron}'")
        return {"start": {"run": context.run_id}}


class TermStartParams(Params):
    days_after_start: int = Field(
        0,
        ge=0,
        le=60,
        description="Days after the first day of each term (0 = on the first day).",
        json_schema_extra={"unit": "days"},
    )


class TermStartTrigger(Block):
    kind = "term_start_trigger"
    category = "trigger"
    label = "Start at each new term"
    help = (
        "Starts the workflow at the start of each term of the district's academic calendar, "
        "or a set number of days after it — for example to retrain when a new cohort arrives."
    )
    icon = "calendar"
    is_trigger = True
    Params = TermStartParams
    outputs = (output("start", PortType.TRIGGER, "Start"),)

    @classmethod
    def due(cls, params: Params, scan: TriggerScan) -> list[Firing]:
        """A firing for each term of the district whose start (+ the offset) is in the window."""
        first = timezone.localdate(scan.since)
        last = timezone.localdate(scan.now)
        offset = dt.timedelta(days=params.days_after_start)
        return [
            Firing(f"term-{term.pk}", {"term": term.name})
            for term in scan.workflow.district.terms()
            if first <= term.start + offset <= last
        ]

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        term = (context.run.conf or {}).get("term")
        if not self.fired_by_hand(context):
            context.log(f"Started for {term or 'a term'} (+{params.days_after_start} days)")
        return {"start": {"run": context.run_id, "term": term}}


class OnAlertParams(Params):
    monitor: Literal["any", "drift", "performance", "latency"] = Field(
        "drift", description="Which monitor's alerts start this workflow."
    )
    min_severity: Literal["warning", "critical"] = Field(
        "critical", description="Only alerts at least this severe start it."
    )


class OnAlertTrigger(Block):
    kind = "on_alert_trigger"
    category = "trigger"
    label = "Start on an alert"
    help = (
        "Starts the workflow when a monitor raises a new alert (e.g. critical drift at a "
        "school): to notify people, start a retraining run, or roll back automatically. The run "
        "knows the alert, and the audit trail names it for any rollback it makes."
    )
    icon = "bell"
    is_trigger = True
    Params = OnAlertParams
    listens_to = "alert"
    outputs = (output("start", PortType.TRIGGER, "Start"),)

    @classmethod
    def matches(cls, params: Params, event: dict[str, Any]) -> Firing | None:
        """The alert event is {alert, school, monitor, severity, cause}."""
        if params.monitor not in ("any", event["monitor"]):
            return None
        if SEVERITY[event["severity"]] < SEVERITY[params.min_severity]:
            return None
        return Firing(
            f"alert-{event['alert']}",
            {
                "alert": event["alert"],
                "school": event["school"],
                "summary": f"{event['severity']} {event['monitor']} alert: {event['cause']}",
            },
        )

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        conf = context.run.conf or {}
        alert = conf.get("alert")
        if self.fired_by_hand(context):
            school = conf.get("school")
            context.log(
                "No alert: the next blocks run "
                + (f"for school {school}." if school else "without an alert's school.")
            )
        else:
            context.log(f"Started by alert {alert}: {conf.get('summary', '')}".strip())
        return {"start": {"run": context.run_id, "alert": alert, "school": conf.get("school")}}


SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def _cron_matches(cron: crontab, at: dt.datetime) -> bool:
    return (
        at.minute in cron.minute
        and at.hour in cron.hour
        and at.day in cron.day_of_month
        and at.month in cron.month_of_year
        and at.isoweekday() % 7 in cron.day_of_week  # celery counts Sunday as 0
    )
