"""Production: every secret from the environment, HTTPS everywhere."""

import os

from agencybilling.env import ConfigError, env_bool, env_int, env_str

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = env_str("SECRET_KEY")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("insecure-"):
    raise ConfigError("SECRET_KEY must be a random string of at least 50 characters")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
# The headers (CSP, X-Frame-Options, nosniff, Referrer-Policy, COOP) and HttpOnly/SameSite cookies are set in
# base for every environment; production adds HTTPS-only cookies.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# Settled invoices' PDFs are stored by the PDF queue after each day (base.py).
INVOICE_PDFS_AHEAD = env_bool("INVOICE_PDFS_AHEAD", True)

# One JSON object per log line unless told otherwise (base.py reads LOG_FORMAT; this only changes its default).
if not os.environ.get("LOG_FORMAT"):
    LOG_FORMAT = "json"
    LOGGING["handlers"]["console"]["formatter"] = "json"  # noqa: F405
