"""Development and `make demo`: debug on, demo host names allowed."""

from .base import *  # noqa: F403
from .base import BASE_DOMAIN, env_bool, env_int, site_url_from_env

DEBUG = env_bool("DEBUG", True)
# Links point at the port the demo serves (`DEMO_PORT`, 8000 by default), unless SITE_URL says otherwise.
SITE_URL = site_url_from_env(
    "SITE_URL", base_domain=BASE_DOMAIN, default=f"http://{BASE_DOMAIN}:{env_int('DEMO_PORT', 8000)}"
)

# Serve static files straight from the app directories (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# The demo may send its webhooks to a receiver on this machine.
WEBHOOK_ALLOW_PRIVATE_HOSTS = True

# Settled invoices' PDFs are stored by the PDF queue after each day (base.py).
INVOICE_PDFS_AHEAD = env_bool("INVOICE_PDFS_AHEAD", True)
