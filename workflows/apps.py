from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        # The domain apps never import the engine: they send signals and ask hooks that the
        # engine answers here (ARCHITECTURE.md §4).
        from edumlops.monitoring import services as monitoring
        from edumlops.registry import models as registry
        from workflows import triggers

        monitoring.alert_raised.connect(triggers.on_alert_raised, dispatch_uid="workflows-alerts")
        monitoring.alert_followups.register(triggers.alert_followups)
        registry.run_approvals.register(triggers.run_approvals)
