"""Template gallery pages and API (being built: issue 5)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def gallery(request: HttpRequest) -> HttpResponse:
    raise Http404("not built yet")


def api_templates(request: HttpRequest) -> HttpResponse:
    raise Http404("not built yet")


def api_use_template(request: HttpRequest, key: str) -> HttpResponse:
    raise Http404("not built yet")
