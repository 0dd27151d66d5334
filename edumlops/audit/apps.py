from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "edumlops.audit"
    label = "audit"
    verbose_name = "Audit trail"
