"""Settings shared by every environment. Everything that differs comes from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.utils.csp import CSP
from kombu import Queue

from agencybilling.env import (
    ConfigError,
    database_from_url,
    email_from_url,
    env_bool,
    env_int,
    env_str,
    site_url_from_env,
)
from agencybilling.queues import celery_routing

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-change-me-0123456789-abcdefghij")
DEBUG = env_bool("DEBUG", False)

# Agencies live on <slug>.<BASE_DOMAIN>; the platform console on BASE_DOMAIN itself.
BASE_DOMAIN = env_str("BASE_DOMAIN", "localhost")
ALLOWED_HOSTS = [BASE_DOMAIN, f".{BASE_DOMAIN}"]
# Every link that leaves the site (emails, invitations, password resets) is built from this one setting:
# scheme, host (BASE_DOMAIN) and port of the platform console; an agency is at <slug>.<host> with the same
# scheme and port (core/links.py).
SITE_URL = site_url_from_env("SITE_URL", base_domain=BASE_DOMAIN, default=f"https://{BASE_DOMAIN}")

SHARED_APPS = [
    "django_tenants",
    "tenants",
    "accounts",
    "billing.platform",
    "django.contrib.postgres",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    "web",
    "agencybilling",  # the project itself: its management commands (load_demo)
]
# Auth and sessions are in both lists on purpose: every agency schema has its own users and
# its own session table, so a session cookie minted on one agency is unknown on another (TEN-2).
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "accounts",
    "clients",
    "billing",
    "notifications",
    "integrations",
    "api",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Agency"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "agencybilling.urls_platform"
ROOT_URLCONF = "agencybilling.urls_agency"
# One `SET search_path` per request instead of one per cursor.
TENANT_LIMIT_SET_CALLS = True
# migrate_schemas skips the agency schemas that already hold every migration (tenants/migration.py).
GET_EXECUTOR_FUNCTION = "tenants.migration.get_executor"
# Migrated spare schemas kept ready so creating an agency renames one instead of migrating (tenants/spares.py).
TENANT_SPARE_SCHEMAS = env_int("TENANT_SPARE_SCHEMAS", 2)
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

MIDDLEWARE = [
    "core.logs.RequestIdMiddleware",
    "tenants.middleware.AgencyTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
                "django.template.context_processors.csp",
                "web.context.navigation",
            ],
        },
    },
]

# --- Browser security headers (every response, every environment) ---------------------------
# Scripts and styles only from this site; the few inline blocks (the agency's brand colour, the Stripe
# Elements set-up) carry the per-response nonce. No plugins, no framing, forms post only here.
# Pages that need more (Stripe.js on the payment-method page, the API docs) widen it for that response only.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

WSGI_APPLICATION = "agencybilling.wsgi.application"

DATABASES = {"default": database_from_url("DATABASE_URL")}
# Prepared statements, through Django's documented PostgreSQL options: off by default (Django's own default, and what
# measured best, docs/performance.md, P5); DATABASE_PREPARE_THRESHOLD=N binds parameters on the server and lets
# psycopg prepare a query after N runs on a connection. Keep it unset behind a transaction-mode PgBouncer.
if env_str("DATABASE_PREPARE_THRESHOLD", ""):
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "server_side_binding": True,
        "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 5),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Every cache key carries the schema name, so agencies never share an entry.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# How long an invitation link (choose your password) works, in days (ONB-1).
INVITATION_TTL_DAYS = env_int("INVITATION_TTL_DAYS", 7)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Sign-in throttling (accounts.login): this many failures for one email in one agency, or from one address,
# within the window refuse further sign-ins (429) until the window ends, even with the right password.
LOGIN_FAILURES_PER_USER = env_int("LOGIN_FAILURES_PER_USER", 5)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 20)
LOGIN_THROTTLE_SECONDS = env_int("LOGIN_THROTTLE_SECONDS", 900)
# Reverse proxies in front of the app whose X-Forwarded-For is trusted for the caller's address (0: none).
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
# Password reset (accounts.password_reset): a link works once, for this long; requests for one address (in one
# agency) and from one caller are limited per window (429 past it).
PASSWORD_RESET_LINK_SECONDS = env_int("PASSWORD_RESET_LINK_SECONDS", 3600)
PASSWORD_RESET_PER_EMAIL = env_int("PASSWORD_RESET_PER_EMAIL", 3)
PASSWORD_RESET_PER_ADDRESS = env_int("PASSWORD_RESET_PER_ADDRESS", 10)
PASSWORD_RESET_WINDOW_SECONDS = env_int("PASSWORD_RESET_WINDOW_SECONDS", 3600)
# 3-D Secure (COL-7): a Pay now whose cardholder left the bank's authentication unfinished this long is cancelled
# at the processor, and the charge can be attempted again.
AUTHENTICATION_WAIT_SECONDS = env_int("AUTHENTICATION_WAIT_SECONDS", 3600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Must exceed every countdown/ETA, or Redis redelivers a task that is still waiting.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BILLING_TICK_SECONDS = env_int("BILLING_TICK_SECONDS", 900)
# The sweeper (beat) re-enqueues work committed but never run: unsent notices, unprocessed webhooks,
# attempts left unknown. Older than the grace period only, so it never races a task that is merely queued.
SWEEP_SECONDS = env_int("SWEEP_SECONDS", 300)
SWEEP_GRACE_SECONDS = env_int("SWEEP_GRACE_SECONDS", 120)
# A notice claimed for sending this long ago lost its sender mid-send: marked Uncertain, never resent.
OUTBOX_SENDING_TIMEOUT_SECONDS = env_int("OUTBOX_SENDING_TIMEOUT_SECONDS", 900)
# A step of an agency's day that fails this many times for a reason of its own (not an unavailable database or
# broker) is given up: recorded, logged as an error, shown to billing support, and the clock goes on (billing/day.py).
DAY_STEP_MAX_FAILURES = env_int("DAY_STEP_MAX_FAILURES", 3)
# The day's last step sees its notices out: it sends those still waiting and waits for those being sent, for at most
# this long; then the day finishes and what is left goes out through the notices' own tasks (a mail server that is
# down or stuck never holds the billing day: docs/decisions/clock-and-notices.md).
DAY_NOTICES_WAIT_SECONDS = env_int("DAY_NOTICES_WAIT_SECONDS", 60)

# Invoice PDFs render in a child process under these bounds (billing/pdf.py): a render that takes longer is killed,
# one that needs more memory (above the process's own size) fails; either answers "try again" instead of hanging or
# growing the web process.
PDF_RENDER_TIMEOUT_SECONDS = env_int("PDF_RENDER_TIMEOUT_SECONDS", 30)
PDF_RENDER_MEMORY_MB = env_int("PDF_RENDER_MEMORY_MB", 512)

# --- Email --------------------------------------------------------------------------------
_email = email_from_url("EMAIL_URL", "console://")
# The demo's mail viewer (`make demo`): the Maildir its local SMTP server writes; unset, the viewer does not exist.
DEMO_MAIL_DIR = env_str("DEMO_MAIL_DIR", "")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"]
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"billing@{BASE_DOMAIN}")

# --- Payments -----------------------------------------------------------------------------
# No secret key → the in-process sandbox processor (demo, fast tests).
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
# The Connect endpoint's own secret (connected accounts' events: account.updated, payouts); may be the same.
STRIPE_CONNECT_WEBHOOK_SECRET = env_str("STRIPE_CONNECT_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")  # a Stripe-compatible server, for tests
PAYMENT_PROVIDER = "stripe" if STRIPE_SECRET_KEY else "sandbox"
# The most one charge may carry, in minor units: the processor's limit (Stripe: eight digits, 99,999,999, i.e.
# $999,999.99). Every computed amount is bounded by it: configurations whose invoice would exceed it are refused,
# an invoice that would exceed it is held (its account only, with the reason), a charge above it is never sent.
CHARGE_CEILING_MINOR = env_int("CHARGE_CEILING_MINOR", 99_999_999)
# Requests/s the platform allows itself on its Stripe account, shared by every worker through Redis
# (0: Stripe's documented limit for the key's mode, a little under; negative: no client-side limit).
STRIPE_RATE_LIMIT = env_int("STRIPE_RATE_LIMIT", 0)
# Charges of one agency in flight at once while collecting (threads, each with a database connection).
COLLECTION_CONCURRENCY = env_int("COLLECTION_CONCURRENCY", 32)
# After an agency's day, the PDFs of the invoices it settled are rendered and stored by the PDF queue's workers,
# so first downloads are served from storage. Off by default (tests, benchmarks); on in production and the demo.
INVOICE_PDFS_AHEAD = env_bool("INVOICE_PDFS_AHEAD", False)

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": env_str("API_RATE_LIMIT", "600/minute")},
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# `Idempotency-Key`s are remembered this long (hourly expiry), as Stripe does.
API_IDEMPOTENCY_TTL_HOURS = env_int("API_IDEMPOTENCY_TTL_HOURS", 24)
# Requests above this size are refused with 413 before they are parsed.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_000_000)
SPECTACULAR_SETTINGS = {
    "TITLE": "agencybilling API",
    "DESCRIPTION": "Agency and platform API. See docs/api.md for conventions and a walkthrough.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema describes every operation of the host, billing support's included: readers sign in (session
    # or token) like for any other call.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": None,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChargeStatusEnum": "billing.base_models.ChargeStatus",
        "AttemptOutcomeEnum": "billing.base_models.AttemptOutcome",
        "AttemptKindEnum": "billing.base_models.AttemptKind",
        "SupportRequestKindEnum": "billing.models.RequestKind",
        "SupportRequestStatusEnum": ["OPEN", "DONE", "REJECTED"],
        "BillingCategoryEnum": "core.categories.BillingCategory",
        "NoticeKindEnum": "notifications.catalog.NoticeKind",
        "OutboxStatusEnum": "notifications.models.OutboxStatus",
        "EventKindEnum": "integrations.models.EventKind",
        "DeliveryStatusEnum": "integrations.models.DeliveryStatus",
        "ServiceRecurrenceEnum": "clients.models.ServiceRecurrence",
        "CreditOutcomeEnum": "billing.statuses.CreditOutcome",
        "RefundStatusEnum": "billing.statuses.RefundStatus",
        "DisputeStatusEnum": "billing.statuses.DisputeStatus",
        "PayoutStatusEnum": "billing.platform.models.PayoutStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.postprocess_conventions",
    ],
}
# Outbound webhooks (integrations): private and loopback addresses are refused unless allowed (tests, demo).
WEBHOOK_ALLOW_PRIVATE_HOSTS = env_bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", False)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# Prometheus scrapes `/metrics` on the platform host with `Authorization: Bearer <METRICS_TOKEN>`; without a token
# set, only from this machine (loopback). Workers serve theirs on WORKER_METRICS_PORT (docs/operations.md).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# Logs: plain text (development) or one JSON object per line (LOG_FORMAT=json, production's default), each
# record with the agency, request id and task id it belongs to (core/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ConfigError(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(agency)s %(request_id)s %(task_id)s] %(message)s"},
        "json": {"()": "core.logs.json_formatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}

# Results are kept only for tasks that ask for them (ignore_result=False) and expire in a day.
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 86400
# One queue per kind of work (agencybilling/queues.py): `<CELERY_QUEUE>.<kind>`, the default queue `<CELERY_QUEUE>`.
# A worker without `-Q` consumes them all; settings that change the prefix recompute both (test.py, bench.py).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "agencybilling")
CELERY_TASK_ROUTES, CELERY_QUEUE_NAMES = celery_routing(CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_QUEUES = [Queue(name) for name in CELERY_QUEUE_NAMES]
