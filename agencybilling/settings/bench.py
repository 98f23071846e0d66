"""Benchmarks (`make bench`): production-like (DEBUG off, no query logging), quiet logs, fast password hashing
for the users the benchmarks create, files under .local/."""

import os

from kombu import Queue

from agencybilling.queues import celery_routing

from .base import *  # noqa: F403
from .base import CACHES, LOGGING, env_str

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["localhost", ".localhost", "127.0.0.1"]
MEDIA_ROOT = BASE_DIR / ".local" / "bench-media"  # noqa: F405
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}
# Notices go to memory unless a benchmark gives its workers a mail server (P7 does, P8 its own process).
if not os.environ.get("EMAIL_URL"):
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# A queue and cache prefix of their own, so a benchmark never shares work with a demo or a test run.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "agencybilling-bench")
CELERY_TASK_ROUTES, CELERY_QUEUE_NAMES = celery_routing(CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_QUEUES = [Queue(name) for name in CELERY_QUEUE_NAMES]
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": "bench"}}
WHITENOISE_USE_FINDERS = True
