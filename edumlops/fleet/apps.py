from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "edumlops.fleet"
    label = "fleet"
    verbose_name = "Edge fleet"
