"""The test suite: real PostgreSQL and Redis, fast password hashing."""

from kombu import Queue

from agencybilling.queues import celery_routing

from .base import *  # noqa: F403
from .base import BASE_DOMAIN, CACHES, LOGGING, env_str, site_url_from_env

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The live server and browser tests reach agencies at <slug>.localhost.
ALLOWED_HOSTS = ["localhost", ".localhost", "testserver", ".testserver"]
# Links in emails: plain http on the default port; tests against the live server set its port.
SITE_URL = site_url_from_env("SITE_URL", base_domain=BASE_DOMAIN, default=f"http://{BASE_DOMAIN}")
MEDIA_ROOT = BASE_DIR / ".local" / "test-media"  # noqa: F405
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}

# pytest-xdist runs the suite in several processes: each gets a database of its own (pytest-django names it
# after the worker, so its agency schemas and advisory locks are its own), and here a Celery queue, a cache
# prefix and a media directory of its own. Child processes a test starts inherit the variable, and so the names.
XDIST_WORKER = env_str("PYTEST_XDIST_WORKER", "")
_PER_WORKER = f"-{XDIST_WORKER}" if XDIST_WORKER else ""
MEDIA_ROOT = MEDIA_ROOT / XDIST_WORKER if XDIST_WORKER else MEDIA_ROOT

# A queue and cache prefix of its own, so a test run never shares work with a running demo.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", f"agencybilling-test{_PER_WORKER}")
CELERY_TASK_ROUTES, CELERY_QUEUE_NAMES = celery_routing(CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_QUEUES = [Queue(name) for name in CELERY_QUEUE_NAMES]
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": f"test{_PER_WORKER}"}}

# Serve static files straight from the app directories (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# The API: no throttling in the way of the fuzzer (a test sets its own rate); webhooks to loopback receivers.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "100000/minute"}}  # noqa: F405
WEBHOOK_ALLOW_PRIVATE_HOSTS = True
WEBHOOK_TIMEOUT_SECONDS = 3

# Tests create their agencies' schemas directly; the spare-schema pool is tested on its own (override_settings).
TENANT_SPARE_SCHEMAS = 0
