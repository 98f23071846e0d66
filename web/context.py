"""What every page's header needs: which sections the signed-in user may open (ROLE-1)."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Role
from accounts.permissions import Capability, has_capability
from tenants.models import Agency


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    agency = getattr(request, "tenant", None)
    on_agency = isinstance(agency, Agency)
    if user is None or not user.is_authenticated:
        return {"area": "agency" if on_agency else "console", "can": {}}
    area = "console" if not on_agency else ("portal" if user.role == Role.CLIENT else "agency")
    can = {c.value: has_capability(user, c) for c in Capability}
    can["billing"] = can[Capability.VIEW_BILLING] or can[Capability.VIEW_OWN_BILLING]
    return {"area": area, "can": can}
