from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "edumlops.core"
    verbose_name = "Core"

    def ready(self) -> None:
        # the project's Celery app, so @shared_task binds to it in every Django process
        import edumlops.celery  # noqa: F401
