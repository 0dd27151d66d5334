from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "edumlops.deployments"
    label = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # the signals that move the serving generation, in every process (web, worker, beat)
        from edumlops.deployments import hotpath  # noqa: F401
