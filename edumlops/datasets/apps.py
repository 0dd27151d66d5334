from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "edumlops.datasets"
    verbose_name = "Datasets"
