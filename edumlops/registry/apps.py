from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "edumlops.registry"
    verbose_name = "Model registry"
