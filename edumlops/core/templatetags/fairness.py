"""`{% load fairness %}{% with bias=model.bias_report|bias_view %}`: the bias report in words, for
the one partial the model card, the bias-gate panel and the approvals inbox include."""

from __future__ import annotations

from typing import Any

from django import template

from edumlops.core.fairness_charts import bias_view as _bias_view

register = template.Library()


@register.filter
def bias_view(report: dict[str, Any] | None) -> dict[str, Any]:
    return _bias_view(report)
