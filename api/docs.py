"""The API's reference pages (Swagger UI, Redoc) under the site's Content-Security-Policy.

Their scripts are all served from this site (the Swagger set-up script by the split view, Redoc without its
inline init); only styles are widened, because both UIs set inline styles at runtime. See docs/decisions.md.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.csp import CSP
from django.utils.decorators import method_decorator
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

DOCS_CSP = {
    **settings.SECURE_CSP,
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "font-src": [CSP.SELF, "data:"],
    "worker-src": [CSP.SELF, "blob:"],
}


@method_decorator(csp_override(DOCS_CSP), name="dispatch")
class ApiDocsView(SpectacularSwaggerSplitView):
    pass


# Redoc's sidebar shows its maker's logo from their CDN (no setting removes it); images only, nothing else.
REDOC_CSP = {**DOCS_CSP, "img-src": [CSP.SELF, "data:", "https://cdn.redoc.ly"]}


@method_decorator(csp_override(REDOC_CSP), name="dispatch")
class ApiRedocView(SpectacularRedocView):
    template_name = "api/redoc.html"
