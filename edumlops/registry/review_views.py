"""The "Answers to rate" page: short answers a scorer was unsure about, for a teacher to score
one by one (htmx swaps the answer in place; without JavaScript the form posts and comes back),
and, for those who manage the district's data, a button per scorer that adds its rated answers to
its training answers (edumlops/registry/reviews.py)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from edumlops.registry import reviews
from edumlops.registry.models import AnswerReview, ModelVersion

PER_PAGE = 20


def _item(review: AnswerReview, *, back: str, error: str = "") -> dict:
    low, high = reviews.scale_of(review.model_version)
    likely = sorted(review.probabilities.items(), key=lambda kv: -kv[1])[:2]
    return {
        "review": review,
        "points": list(range(low, high + 1)),
        "shown": reviews.shown_values(review),
        "likely": [(int(p), q) for p, q in likely],
        "error": error,
        "back": back,  # where the form comes back to without JavaScript
    }


@login_required
def ratings(request: HttpRequest) -> HttpResponse:
    mine = reviews.reviews_for(request.user)
    status = request.GET.get("status", AnswerReview.Status.WAITING)
    if status not in AnswerReview.Status.values:
        status = AnswerReview.Status.WAITING
    scorers = list(
        ModelVersion.objects.filter(pk__in=mine.values("model_version"))
        .annotate(
            waiting=Count("answer_reviews", filter=Q(answer_reviews__status="waiting")),
            to_add=Count(
                "answer_reviews",
                filter=Q(answer_reviews__status="rated", answer_reviews__stored_in__isnull=True),
            ),
        )
        .select_related("district", "dataset_version__dataset")
        .order_by("name", "-created_at")
    )
    chosen = request.GET.get("model", "")
    found = mine.filter(status=status)
    if chosen.isdigit():
        found = found.filter(model_version_id=int(chosen))
    if status != AnswerReview.Status.WAITING:
        found = found.order_by("-rated_at", "-pk")
    page = Paginator(found, PER_PAGE).get_page(request.GET.get("page"))
    for scorer in scorers:
        scorer.may_add = scorer.to_add and reviews.may_add_to_training(request.user, scorer)
    return TemplateResponse(
        request,
        "registry/ratings.html",
        {
            "items": [_item(r, back=request.get_full_path()) for r in page],
            "page": page,
            "status": status,
            "statuses": AnswerReview.Status.choices,
            "scorers": scorers,
            "chosen": chosen,
        },
    )


@login_required
@require_POST
def rate(request: HttpRequest, pk: int) -> HttpResponse:
    review = get_object_or_404(reviews.reviews_for(request.user), pk=pk)
    error = ""
    try:
        if "skip" in request.POST:
            review = reviews.skip(review, request.user)
        elif request.POST.get("score", "") == "":
            low, high = reviews.scale_of(review.model_version)
            error = f"Choose a score from {low} to {high}, or press Can't score."
        else:
            review = reviews.rate(review, request.POST["score"], request.user)
    except reviews.ReviewError as exc:
        error = str(exc)
    if request.htmx:
        review.refresh_from_db()
        return TemplateResponse(
            request, "registry/_rating.html", _item(review, back=reverse("ratings"), error=error)
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Score saved.")
    back = request.POST.get("next", "")
    listing = reverse("ratings")
    return redirect(back if back == listing or back.startswith(listing + "?") else listing)


@login_required
@require_POST
def add_to_training(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(
        ModelVersion.objects.filter(district__in=reviews.rating_districts(request.user)), pk=pk
    )
    if not reviews.may_add_to_training(request.user, model):
        raise PermissionDenied(
            "Only those who manage the district's data add ratings to a dataset."
        )
    try:
        version, added = reviews.add_to_training(model, request.user)
    except reviews.ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{added} rated answer{'s' if added != 1 else ''} added to {version.dataset.name}: "
            f"version {version.number} "
            f"({version.rows:,} rows). Train the scorer on its newest version to learn from them.",
        )
    return redirect(f"{reverse('ratings')}?status=rated")
