"""The notifications page: what the workflows told this person, newest first, each linking to
the page to act on; opening one marks it read."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from edumlops.core.http import posted_id
from workflows.models import Notification


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    items = Notification.objects.filter(user=request.user)
    page = Paginator(items, 30).get_page(request.GET.get("page"))
    return TemplateResponse(
        request,
        "core/notifications.html",
        {"page": page, "unread": items.filter(read_at__isnull=True).count()},
    )


@login_required
def notification_open(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark the notification read and go to its page (its list when it links nowhere safe)."""
    note = get_object_or_404(Notification, pk=pk, user=request.user)
    Notification.mark_read(request.user, note.pk)
    if note.link and url_has_allowed_host_and_scheme(note.link, allowed_hosts=None):
        return redirect(note.link)
    return redirect("notifications")


@login_required
@require_POST
def notification_mark_read(request: HttpRequest) -> HttpResponse:
    """POST `notification=<id>` marks that one read; without it, every one of the user's."""
    if request.POST.get("notification"):
        note = get_object_or_404(
            Notification, pk=posted_id(request.POST.get("notification")), user=request.user
        )
        Notification.mark_read(request.user, note.pk)
    else:
        marked = Notification.mark_read(request.user)
        messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} read.")
    return redirect("notifications")
