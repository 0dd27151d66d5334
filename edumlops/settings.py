"""EduMLOps settings: one file, read from the environment, with defaults that run on one machine.

DJANGO_ENV=development (default) runs on SQLite under var/, the embedded Celery transport and a
local MLflow store. DJANGO_ENV=production requires SECRET_KEY and ALLOWED_HOSTS and turns on the
secure-cookie, HTTPS and HSTS settings so that ``manage.py check --deploy`` is clean.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from edumlops.env import (
    ConfigError,
    broker_config,
    database_config,
    env_bool,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("EDUMLOPS_VAR_DIR") or BASE_DIR / "var").resolve()

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ConfigError(f"DJANGO_ENV={DJANGO_ENV!r} is unknown: set it to development or production")
PRODUCTION = DJANGO_ENV == "production"

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ConfigError(
            "SECRET_KEY is not set: set SECRET_KEY to a long random string, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"
elif PRODUCTION and len(SECRET_KEY) < 50:
    raise ConfigError("SECRET_KEY is shorter than 50 characters: set a longer random string")

DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is not set: set it to the site's host names, comma-separated")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "axes",
    "csp",
    "edumlops.core",
    "edumlops.site",
    "edumlops.schools",
    "edumlops.datasets",
    "edumlops.privacy",
    "edumlops.registry",
    "edumlops.audit",
    "edumlops.deployments",
    "edumlops.monitoring",
    "edumlops.fleet",
    "workflows",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # last: turns a locked-out login into the lockout page (429)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "edumlops.urls"
WSGI_APPLICATION = "edumlops.wsgi.application"
ASGI_APPLICATION = "edumlops.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "edumlops.site.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": database_config(env_str("DATABASE_URL"), VAR_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = (
    DEBUG  # development serves static/ and packages' files without collectstatic
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # User keys first: an unauthenticated request gets 401 with WWW-Authenticate, not 403.
        "edumlops.core.userkeys.UserKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only in and out, with limits (edumlops/core/api.py); forms and files for uploads.
    "DEFAULT_PARSER_CLASSES": [
        "edumlops.core.api.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # every error in one shape: {"detail", "code", "errors": [{"field", "message"}]}
    "EXCEPTION_HANDLER": "edumlops.core.api.exception_handler",
}
# The largest JSON body the API reads (413 above it).
API_MAX_BODY_BYTES = env_int("EDUMLOPS_API_MAX_BODY_BYTES", 10 * 1024 * 1024)

# Predictions are recorded off the request path (edumlops/deployments/recorder.py,
# docs/serving.md): each serving process buffers them and writes them every
# EDUMLOPS_PREDICTION_FLUSH_MS (0: in the request itself); a hard crash loses at most that much,
# and never more than EDUMLOPS_PREDICTION_BUFFER_ROWS rows (a request finding the buffer full
# writes it). A graceful stop writes everything.
PREDICTION_FLUSH_SECONDS = env_int("EDUMLOPS_PREDICTION_FLUSH_MS", 500) / 1000
PREDICTION_BUFFER_ROWS = env_int("EDUMLOPS_PREDICTION_BUFFER_ROWS", 10_000)
if PREDICTION_FLUSH_SECONDS < 0 or PREDICTION_BUFFER_ROWS < 1:
    raise ConfigError(
        "EDUMLOPS_PREDICTION_FLUSH_MS must be 0 or more (e.g. 500) and "
        "EDUMLOPS_PREDICTION_BUFFER_ROWS at least 1 (e.g. 10000)"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "EduMLOps API",
    "DESCRIPTION": "Workflows, runs, approvals, districts and schools.",
    "VERSION": "0.1.0",
    # Swagger UI from the drf-spectacular-sidecar package: no page needs the internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "edumlops.core.api.add_error_responses",
    ],
}

# --- Throttling and failed-login lockout ---------------------------------------------------------
# The shared cache keeps throttle counts for every worker: Redis when REDIS_URL is set, otherwise
# files under var/cache (the embedded default).
_cache_url = env_str("EDUMLOPS_CACHE_URL") or env_str("REDIS_URL")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "edumlops-cache",
        }
        if _cache_url
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    )
}
# Requests per caller (user, key or address) on the busy API doors, e.g. "120/min"; "off" lifts
# a limit. Over it the API answers 429 with Retry-After (edumlops/core/throttles.py).
EDUMLOPS_THROTTLE_RATES = {
    scope: (None if rate.lower() == "off" else rate)
    for scope, rate in {
        "predict": env_str("EDUMLOPS_THROTTLE_PREDICT", "120/min"),
        "tokens": env_str("EDUMLOPS_THROTTLE_TOKENS", "10/min"),
        "uploads": env_str("EDUMLOPS_THROTTLE_UPLOADS", "30/hour"),
        "telemetry": env_str("EDUMLOPS_THROTTLE_TELEMETRY", "600/min"),
    }.items()
}
_RATE = re.compile(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)")
for _scope, _rate in EDUMLOPS_THROTTLE_RATES.items():
    if _rate is not None and not _RATE.fullmatch(_rate):
        raise ConfigError(
            f"EDUMLOPS_THROTTLE_{_scope.upper()}={_rate!r}: write a rate such as 120/min or off"
        )

# Failed logins (django-axes) on /login/ and /admin/login/: after EDUMLOPS_LOGIN_FAILURES wrong
# passwords for one account (from any address), or from one address (for any account), that
# account or address is locked out for
# EDUMLOPS_LOGIN_COOLOFF_MINUTES (each further try restarts the wait); even the right password is
# refused meanwhile, with the lockout page (429) that says when to try again. Attempts are kept in
# the database (admin: Axes → Access attempts; delete one, or `manage.py axes_reset_username
# NAME`, to unlock). docs/security.md.
LOGIN_FAILURES = env_int("EDUMLOPS_LOGIN_FAILURES", 10)
LOGIN_COOLOFF_MINUTES = env_int("EDUMLOPS_LOGIN_COOLOFF_MINUTES", 15)
for _name, _value in (
    ("EDUMLOPS_LOGIN_FAILURES", LOGIN_FAILURES),
    ("EDUMLOPS_LOGIN_COOLOFF_MINUTES", LOGIN_COOLOFF_MINUTES),
):
    if _value < 1:
        raise ConfigError(f"{_name}={_value} must be at least 1, e.g. 10 failures or 15 minutes")
AUTHENTICATION_BACKENDS = [
    # first: refuses a locked-out account or address before any password is checked
    "edumlops.site.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURES
AXES_COOLOFF_TIME = dt.timedelta(minutes=LOGIN_COOLOFF_MINUTES)
# per account (guessing one password from many addresses) and per address (one address spraying
# many accounts); a successful login clears both counts
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "edumlops.site.lockout.locked_out"
AXES_VERBOSE = False

# --- Content-Security-Policy ---------------------------------------------------------------------
# django-csp 4 (docs/security.md): only this site's own scripts, styles and fetches; no inline
# script or style, no plugins, no framing. Pages keep scripts and styles in static/ files.
_SELF, _NONE = "'self'", "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [_SELF],
        "img-src": [_SELF, "data:"],
        "connect-src": [_SELF],
        "object-src": [_NONE],
        "base-uri": [_SELF],
        "frame-ancestors": [_NONE],
        "form-action": [_SELF],
    },
}

# --- Security: strict in production, so that `check --deploy` has nothing to say ---------------
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# --- Celery: Redis when configured, otherwise the embedded filesystem transport ---------------
_broker = broker_config(VAR_DIR)
CELERY_BROKER_URL = _broker["broker_url"]
CELERY_RESULT_BACKEND = _broker["result_backend"]
CELERY_BROKER_TRANSPORT_OPTIONS = _broker["broker_transport_options"]
CELERY_EMBEDDED_TRANSPORT = _broker["embedded"]
if not CELERY_EMBEDDED_TRANSPORT:
    # Redis hands an unacknowledged message (its worker killed mid-task) to another worker only
    # after this many seconds. Runs do not wait for it: the reconciler takes over a step whose
    # heartbeat is older than EDUMLOPS_STEP_LEASE_SECONDS (docs/durability.md); a redelivery
    # that comes later finds the step done and does nothing. Keep it longer than the longest
    # step, so that a step still running is not handed out twice.
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        visibility_timeout=env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
        unacked_restore_interval=env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
        unacked_restore_throttle=1,
    )
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# A running step whose heartbeat (every 5 s) is older than this is taken over by the reconciler,
# which sweeps every EDUMLOPS_RECONCILE_SECONDS in one worker; a sent step that no worker took
# within EDUMLOPS_RESEND_AFTER_SECONDS (doubling with each re-send) is sent again.
EDUMLOPS_STEP_LEASE_SECONDS = env_int("EDUMLOPS_STEP_LEASE_SECONDS", 30)
EDUMLOPS_RECONCILE_SECONDS = env_int("EDUMLOPS_RECONCILE_SECONDS", 2)
EDUMLOPS_RESEND_AFTER_SECONDS = env_int("EDUMLOPS_RESEND_AFTER_SECONDS", 10)
for _name in ("EDUMLOPS_STEP_LEASE_SECONDS", "EDUMLOPS_RECONCILE_SECONDS"):
    if globals()[_name] < 1:
        raise ConfigError(f"{_name}={globals()[_name]} must be at least 1 (seconds)")

# --- MLflow: a local SQLite store under var/ unless a tracking server is named ---------------
# Flower's SuperLink (host:port): the school servers' SuperNodes connect to it and federated
# runs are submitted to it; Flower 1.42 serves both on one port. `make run` starts one on the
# embedded default (FLOWER_SUPERLINK_START); docker-compose runs it as its own service.
FLOWER_SUPERLINK = env_str("FLOWER_SUPERLINK", "127.0.0.1:9093")
FLOWER_SUPERLINK_START = env_bool("FLOWER_SUPERLINK_START", True)
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI") or f"sqlite:///{VAR_DIR / 'mlflow.db'}"
# Where new experiments keep their artifacts; empty with a tracking server (it serves its own).
MLFLOW_ARTIFACT_ROOT = env_str("MLFLOW_ARTIFACT_ROOT") or (
    "" if MLFLOW_TRACKING_URI.startswith("http") else (VAR_DIR / "mlartifacts").as_uri()
)

# --- datasets, pseudonyms and bundle signing -------------------------------------------------
DATASET_DIR = VAR_DIR / "datasets"
DATASET_MAX_MB = env_int("EDUMLOPS_DATASET_MAX_MB", 100)
DATASET_MIN_ROWS = env_int("EDUMLOPS_DATASET_MIN_ROWS", 20)
# The key of the keyed hash that replaces identifiers (HMAC-SHA256); derived from SECRET_KEY
# unless given, so pseudonyms stay stable across restarts of one installation.
PSEUDONYM_KEY = env_str("EDUMLOPS_PSEUDONYM_KEY") or f"pseudonym:{SECRET_KEY}"
# Ed25519 key that signs every model bundle's manifest (created on first use, mode 0600).
SIGNING_KEY_PATH = Path(env_str("EDUMLOPS_SIGNING_KEY") or VAR_DIR / "keys" / "bundle-signing.pem")

# --- edge servers at schools ---------------------------------------------------------------
# How often an edge agent asks for its manifest; a node silent for three polls shows as offline.
EDGE_POLL_SECONDS = env_int("EDUMLOPS_EDGE_POLL_SECONDS", 60)
if EDGE_POLL_SECONDS < 1:
    raise ConfigError(
        f"EDUMLOPS_EDGE_POLL_SECONDS={EDGE_POLL_SECONDS} must be at least 1: set it to e.g. 60"
    )

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "edumlops@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# celery beat's own pulse: `manage.py healthcheck beat` checks that it was sent recently.
# Raw prediction rows are kept this many days; daily aggregates stay.
PREDICTION_RETENTION_DAYS = env_int("PREDICTION_RETENTION_DAYS", 30)

# How far back each trigger scan looks, so a late or missed beat still fires a schedule once.
EDUMLOPS_TRIGGER_WINDOW_MINUTES = env_int("EDUMLOPS_TRIGGER_WINDOW_MINUTES", 10)

# The Split step's stored rows (var/frames) not read for this many days are deleted every hour.
EDUMLOPS_FRAME_RETENTION_DAYS = env_int("EDUMLOPS_FRAME_RETENTION_DAYS", 7)

CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "edumlops.heartbeat", "schedule": 60.0},
    "expire-approvals": {"task": "workflows.expire_approvals", "schedule": 60.0},
    # every time and calendar trigger (schedules, term starts): see workflows/triggers.py
    "scan-triggers": {"task": "workflows.scan_triggers", "schedule": 60.0},
    "prune-frames": {"task": "workflows.prune_frames", "schedule": 3600.0},
    "aggregate-and-prune-predictions": {
        "task": "monitoring.aggregate_and_prune",
        "schedule": 3600.0,
    },
}
