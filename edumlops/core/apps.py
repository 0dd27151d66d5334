from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Small pieces every app may use (machine keys, the clock, chart geometry, platform
    tasks); it imports no other app of the project."""

    name = "edumlops.core"
    verbose_name = "Core"
