"""EduMLOps: a low-code MLOps platform for schools and districts."""

from edumlops.celery import app as celery_app

__all__ = ["celery_app"]
