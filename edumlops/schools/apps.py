from django.apps import AppConfig


class SchoolsConfig(AppConfig):
    name = "edumlops.schools"
    verbose_name = "Districts and schools"
