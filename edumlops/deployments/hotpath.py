"""The predict API's fast path: `POST /api/schools/{id}/predict/` with an integration token and
good rows costs one small query, one ONNX Runtime run and no write.

- **What a process keeps.** Integration tokens by key hash, and per school what answers for it
  (its deployment and model version), in this process's memory, tagged with the serving
  generation (deployments.ServingState) they were read under. Every request reads the
  generation (one indexed row); when it moved, everything kept is dropped and read again.
- **Why a rollback reaches every process at once.** Whatever changes what the API answers with
  (a rollout, rollback, promotion, a pilot's schools, a revoked or deleted token, a deleted
  school) bumps the generation in the same transaction (`bump`, called by the services and by
  the signals below). So the request after the rollback's commit reads the new generation in
  whichever process it lands and resolves the school again; a process can never keep an old
  deployment under a new generation, because it reads the generation before what it caches.
- **What it skips.** DRF's request and response machinery, the permission queries, the per-row
  inserts (rows go to edumlops.deployments.recorder, written off the request path), the
  standard library's JSON (orjson).
- **When it steps aside.** Anything but a good request from a live integration token within its
  scope — a user's session or key, an unknown token, another school, no deployment, a bundle
  that cannot be served, a body that is not a well-formed `rows`/`row` object, a row with any
  fault, the caller over its rate — goes to the full DRF view (api.school_predict), which
  answers it exactly as before (401/403/404/409/413/415/429/503, or a 400 naming each row and
  feature at fault). The fast path has written nothing and counted nothing by then.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import DatabaseError, connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from edumlops.core.keys import hash_key
from edumlops.core.throttles import hit, uncount, verdict, windows
from edumlops.core.throttles import parse as parse_rate
from edumlops.deployments import serving
from edumlops.deployments.models import Deployment, IntegrationToken, ServingState
from edumlops.deployments.recorder import RECORDER, Pending
from edumlops.ml.serving_core import MAX_ROWS, RequestError, columns, score_columns
from edumlops.schools.models import School

log = logging.getLogger(__name__)

_READ = "SELECT generation FROM deployments_servingstate WHERE id = 1"
_BUMP = "UPDATE deployments_servingstate SET generation = generation + 1 WHERE id = 1"
_TOKEN = "Bearer " + "edu_"


def generation() -> int | None:
    """The serving generation now (None if its row is gone: then nothing is kept)."""
    with connection.cursor() as cursor:
        cursor.execute(_READ)
        row = cursor.fetchone()
    return None if row is None else row[0]


def bump() -> None:
    """Every serving process drops what it kept, at the commit of the current transaction
    (or now, outside one). With Redis the shared counter moves now (processes that look before
    the commit re-read the old state, which is still the committed one) and again at the commit
    (they re-read the new one), before the caller gets control back."""
    with connection.cursor() as cursor:
        cursor.execute(_BUMP)
        if cursor.rowcount == 0:
            ServingState.objects.get_or_create(pk=1)
            cursor.execute(_BUMP)
    _publish()
    transaction.on_commit(_publish)


# --- the generation shared through Redis -------------------------------------------------------
# With Redis (as deployed), the fast path reads a counter there, in the same round trip that
# counts the caller's rate: no database query at all. The database's generation stays the truth:
# each process also reads it every VERIFY_EVERY seconds, so an increment lost (Redis away at the
# commit, a crash between the commit and the increment) costs at most that long.
VERIFY_EVERY = 1.0
_SHARED = "serving-generation"
_STATE = """
local g = redis.call('GET', KEYS[1])
if not g then
  redis.call('SET', KEYS[1], ARGV[2], 'NX')
  g = redis.call('GET', KEYS[1])
end
if ARGV[1] == '0' then return {g, 0, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {g, n, tonumber(redis.call('GET', KEYS[3]) or '0')}
"""


def _redis() -> RedisCache | None:
    backend = caches["default"]
    return backend if isinstance(backend, RedisCache) else None


def _publish() -> None:
    backend = _redis()
    if backend is None:
        return
    try:
        backend._cache.get_client(write=True).incr(backend.make_and_validate_key(_SHARED))
    except Exception:  # noqa: BLE001 - each process reads the database within VERIFY_EVERY
        log.warning("could not move the shared serving generation; processes catch up within 1 s")


def _shared_state(
    backend: RedisCache, counter: str | None, previous: str | None, ttl: int
) -> tuple[str, int, int]:
    """(the shared generation, this window's count with this request, the last window's)."""
    script = getattr(backend, "_edumlops_serving", None)
    if script is None:  # one registered script per cache object (one per thread)
        client = backend._cache.get_client(write=True)
        script = backend._edumlops_serving = client.register_script(_STATE)
    key = backend.make_and_validate_key
    shared, counted, before = script(
        keys=[key(_SHARED), key(counter or "-"), key(previous or "-")],
        args=[ttl, random.getrandbits(62)],  # a fresh start after Redis lost the counter
    )
    return f"r{int(shared)}", int(counted), int(before)


_looked = [None, -1e9]  # the database's generation when this process last read it, and when


def _database_moved() -> bool:
    """Read the database's generation at most every VERIFY_EVERY s: has it moved since?"""
    now = time.monotonic()
    if now - _looked[1] < VERIFY_EVERY:
        return False
    try:
        current = generation()
    except DatabaseError:  # away: answers go on from memory, recorded once it is back
        return False
    moved = _looked[0] is not None and current != _looked[0]
    _looked[:] = [current, now]
    return moved


@dataclass(frozen=True)
class Token:
    id: int
    district_id: int
    school_id: int | None


@dataclass(frozen=True)
class Route:
    """What answers for one school."""

    school_id: int
    district_id: int
    deployment: Deployment | None


@dataclass
class Kept:
    """What this process keeps under one generation."""

    generation: int | None
    tokens: dict[str, Token] = field(default_factory=dict)
    routes: dict[int, Route] = field(default_factory=dict)

    def token(self, key_hash: str) -> Token | None:
        found = self.tokens.get(key_hash)
        if found is None:
            live = (
                IntegrationToken.objects.filter(key_hash=key_hash, revoked_at__isnull=True)
                .values_list("pk", "district_id", "school_id")
                .first()
            )
            if live is None:
                return None  # never kept: a key made later must be found
            found = Token(*live)
            if self.generation is not None:
                self.tokens[key_hash] = found
        return found

    def route(self, school_id: int) -> Route | None:
        found = self.routes.get(school_id)
        if found is None:
            school = School.objects.filter(pk=school_id).first()
            if school is None:
                return None
            from edumlops.deployments import services

            found = Route(school.pk, school.district_id, services.resolve(school))
            if self.generation is not None:
                self.routes[school_id] = found
        return found


_kept = Kept(None)
_lock = threading.Lock()


def kept() -> Kept:
    """What this process may use under the database's generation (one query)."""
    return kept_under(generation())


def kept_under(label: int | str | None, fresh: bool = False) -> Kept:
    """What this process keeps under generation `label`: dropped when the label moved (or when
    `fresh`); nothing is kept under None."""
    global _kept
    if label is None:
        return Kept(None)
    current = _kept
    if fresh or current.generation != label:
        with _lock:
            if fresh or _kept.generation != label:
                _kept = Kept(label)
            current = _kept
    return current


def forget() -> None:
    """Drop what this process keeps (the tests start each case empty)."""
    global _kept
    _kept = Kept(None)
    _looked[:] = [None, -1e9]


# --- the view --------------------------------------------------------------------------------


def _texts_ok(texts: list[str]) -> bool:
    """No category longer than serving.MAX_TEXT and no NUL (which the full path refuses)."""
    return max(map(len, texts), default=0) <= serving.MAX_TEXT and "\x00" not in "".join(texts)


def fast_predict(request: HttpRequest, pk: int) -> HttpResponse | None:
    """The answer to a good request from a live integration token, or None to step aside."""
    meta = request.META
    header = meta.get("HTTP_AUTHORIZATION", "")
    if request.method != "POST" or not header.startswith(_TOKEN):
        return None
    if meta.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > min(settings.API_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or length):
        return None  # the full path reads it as a stream, and answers 413 when too large
    key_hash = hash_key(header[7:].strip())
    rate = settings.EDUMLOPS_THROTTLE_RATES.get("predict")
    limit, period = parse_rate(rate) if rate else (0, 0)
    backend = _redis()
    if backend is None:  # the embedded default: the database's generation, every request
        return _answer(request, pk, kept(), key_hash, limit, period, None)
    known = _kept.token(key_hash)  # its id never changes; whether it is live is checked after
    if known is None:
        return None
    current, previous, elapsed = (
        windows(f"throttle_predict_IntegrationToken:{known.id}", period, time.time())
        if limit
        else (None, None, 0.0)
    )
    label, count, before = _shared_state(backend, current, previous, 2 * period)
    state = kept_under(label, fresh=_database_moved())
    counted = (current, count, before, elapsed) if current else None
    answer = _answer(request, pk, state, key_hash, limit, period, counted)
    if answer is None and current is not None:
        uncount(current)  # stepping aside: the full path counts the request itself
    return answer


def _answer(
    request: HttpRequest,
    pk: int,
    state: Kept,
    key_hash: str,
    limit: int,
    period: int,
    counted: tuple[str, int, int, float] | None,
) -> HttpResponse | None:
    token = state.token(key_hash)
    if token is None:
        return None
    route = state.route(pk)
    if (
        route is None
        or route.district_id != token.district_id
        or (token.school_id is not None and token.school_id != route.school_id)
        or route.deployment is None
    ):
        return None
    deployment = route.deployment
    try:
        model = serving.CACHE.get(deployment.model_version)
    except Exception:  # noqa: BLE001 - the full path says what is wrong with the bundle
        return None
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or len(body) != 1:
        return None
    if "rows" in body:
        rows = body["rows"]
        if type(rows) is not list or not 1 <= len(rows) <= MAX_ROWS:
            return None
        if not all(type(row) is dict for row in rows):
            return None
    elif "row" in body and type(body["row"]) is dict:
        rows = [body["row"]]
    else:
        return None
    try:
        cols = columns(model, rows)
    except RequestError:
        return None
    if not all(_texts_ok(texts) for texts in cols.categorical.values()):
        return None
    if RECORDER.full():  # the answer could not be recorded
        return None
    if limit:  # over its rate: the full path refuses it (429, Retry-After)
        if counted is None:
            if hit(f"throttle_predict_IntegrationToken:{token.id}", limit, period) is not None:
                return None
        elif verdict(counted[1], counted[2], limit, period, counted[3]) is not None:
            return None
    answers, seconds = score_columns(model, cols)
    warnings = serving.unseen_categories(model, rows)
    deployment_id = deployment.pk
    record(model, route.school_id, deployment_id, rows, answers, seconds, warnings)
    RECORDER.used(token.id)
    for answer in answers:
        answer["deployment"] = deployment_id
    return HttpResponse(
        orjson.dumps({"school": route.school_id, "predictions": answers, "warnings": warnings}),
        content_type="application/json",
    )


def record(
    model: serving.ServingModel,
    school_id: int,
    deployment_id: int,
    rows: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    seconds: float,
    warnings: list[dict[str, Any]],
) -> None:
    """Hand the answered rows to the recorder: rows checked to hold exactly the model's
    features (serving_core.columns), so each is stored as it came."""
    unseen: dict[int, list[str]] = {}
    for w in warnings:
        unseen.setdefault(w["row"], []).append(w["field"])
    per_row_ms = 1000 * seconds / len(rows)
    now = timezone.now()
    RECORDER.add(
        [
            Pending(
                school_id,
                deployment_id,
                model.model_version_id,
                row,  # checked: exactly the model's features
                a["probability"],
                a["risk_band"],
                per_row_ms,
                unseen.get(i, []),
                now,
            )
            for i, (row, a) in enumerate(zip(rows, answers, strict=True))
        ]
    )


def view(full: Any) -> Any:
    """The URL's view: the fast path, else `full` (the DRF view, which the OpenAPI schema
    documents: this function carries its class)."""

    @csrf_exempt  # a bearer key, never a cookie; `full` checks CSRF for sessions itself
    def predict(request: HttpRequest, pk: int) -> HttpResponse:
        started = time.perf_counter()
        answer = fast_predict(request, pk)
        if answer is None:
            return full(request, pk)
        answer["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - started):.2f}"
        return answer

    predict.cls = full.cls  # type: ignore[attr-defined]
    predict.initkwargs = full.initkwargs  # type: ignore[attr-defined]
    predict.__doc__ = full.__doc__
    return predict


# --- what moves the generation ---------------------------------------------------------------


@receiver(post_save, sender=Deployment)
@receiver(post_delete, sender=Deployment)
@receiver(post_delete, sender=IntegrationToken)
@receiver(post_delete, sender=School)
def _changed(sender: Any, **kwargs: Any) -> None:
    bump()


@receiver(m2m_changed, sender=Deployment.schools.through)
def _schools_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        bump()


@receiver(post_save, sender=IntegrationToken)
def _token_saved(sender: Any, instance: IntegrationToken, created: bool, **kwargs: Any) -> None:
    if not created and instance.revoked_at is not None:
        bump()
