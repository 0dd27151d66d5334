"""The threshold page (being built: issue 5)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def thresholds_page(request: HttpRequest) -> HttpResponse:
    raise Http404("not built yet")
