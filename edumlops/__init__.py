"""EduMLOps: a low-code MLOps platform for schools and districts.

The Celery app is loaded by Django at start-up (edumlops.core.apps) and found by `celery -A
edumlops`; importing the package itself pulls in neither Django nor Celery, so the edge agent
(edumlops.edge) runs with onnxruntime, numpy and cryptography alone."""

from __future__ import annotations

from typing import Any

__all__ = ["celery_app"]


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from edumlops.celery import app

        return app
    raise AttributeError(f"module 'edumlops' has no attribute {name!r}")
