from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The top of the project: home and dashboard pages, navigation, the demo seed and the
    commands that start or check the whole stack. It may import every app; none imports it."""

    name = "edumlops.site"
    label = "site"
    verbose_name = "Site"

    def ready(self) -> None:
        # the project's Celery app, so @shared_task binds to it in every Django process
        import edumlops.celery  # noqa: F401

        # the audit record of each failed-login lockout
        import edumlops.site.lockout  # noqa: F401
