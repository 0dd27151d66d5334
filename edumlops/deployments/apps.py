from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "edumlops.deployments"
    label = "deployments"
    verbose_name = "Deployments"
