from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "edumlops.privacy"
    label = "privacy"
    verbose_name = "Privacy budget"
