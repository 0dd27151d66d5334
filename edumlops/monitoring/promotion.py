"""Monitoring's condition on a promotion: no open alert on a pilot school (or on its whole
district). Registered with `edumlops.deployments.rollout` at start-up (MonitoringConfig.ready),
so deployments enforce it at every door without importing monitoring."""

from __future__ import annotations

from edumlops.deployments.models import Deployment
from edumlops.deployments.rollout import Unmet
from edumlops.monitoring.models import open_alerts
from edumlops.schools.models import School

SHOWN = 5  # alerts named in the message


def no_open_alert(pilot: Deployment, schools: list[School]) -> Unmet | None:
    alerts = list(open_alerts(schools)[:SHOWN])
    if not alerts:
        return None
    return Unmet("open alert(s) on the pilot: " + "; ".join(str(a) for a in alerts), "resolve them")
