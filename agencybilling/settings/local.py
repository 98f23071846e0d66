"""Development and `make demo`: debug on, demo host names allowed."""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DEBUG", True)
SITE_SCHEME = "http"
SITE_PORT_SUFFIX = ":8000"

# Serve static files straight from the app directories (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# The demo may send its webhooks to a receiver on this machine.
WEBHOOK_ALLOW_PRIVATE_HOSTS = True
