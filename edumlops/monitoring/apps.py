from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "edumlops.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"
