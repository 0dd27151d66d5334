from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "edumlops.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from edumlops.deployments import rollout
        from edumlops.monitoring import promotion

        rollout.register_promotion_check(promotion.no_open_alert)
