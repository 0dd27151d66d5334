from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "edumlops.core"
    verbose_name = "Core"
