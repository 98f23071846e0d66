"""Who may open which page (ROLE-1, TEN-2), and the business date the pages show.

Every agency view is wrapped in `staff_view(capability)`, every portal view in `client_view`, every console
view in `support_view`. Objects outside what the user may see answer 404 (never 403 with details).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from accounts.models import Role, User
from accounts.permissions import Capability, has_capability
from billing.models import Invoice
from clients.models import Client, ClientUser
from clients.selectors import client_visibility
from tenants.models import Agency
from tenants.selectors import agency_business_date


def _agency(request: HttpRequest) -> Agency | None:
    tenant = getattr(request, "tenant", None)
    return tenant if isinstance(tenant, Agency) else None


def staff_view(capability: Capability | tuple[Capability, ...] | None = None) -> Callable:
    """An agency-domain page for agency staff. `capability`: one of them is required (403 otherwise).
    Anyone not signed in to this agency goes to the login page; client users get 404."""
    needed = (capability,) if isinstance(capability, Capability) else tuple(capability or ())

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if _agency(request) is None:
                raise Http404
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user.is_agency_staff:  # type: ignore[union-attr]
                # Client users (and anyone else) find nothing of the agency's here (TEN-2); "/" sends client
                # users to their portal.
                raise Http404
            if needed and not any(has_capability(user, c) for c in needed):  # type: ignore[arg-type]
                raise PermissionDenied("Your role cannot open this page.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def client_view(view: Callable) -> Callable:
    """A client-portal page: a signed-in client user linked to one client of this agency."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if _agency(request) is None:
            raise Http404
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if user.role != Role.CLIENT:  # type: ignore[union-attr]
            return redirect("home")
        client = portal_client(user)  # type: ignore[arg-type]
        if client is None:
            raise Http404
        request.portal_client = client  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def support_view(view: Callable) -> Callable:
    """A billing-support console page on the platform domain (public schema)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if _agency(request) is not None:
            raise Http404
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if user.role != Role.BILLING_SUPPORT or not has_capability(user, Capability.SUPPORT):  # type: ignore[union-attr,arg-type]
            raise PermissionDenied("Only billing support can open the console.")
        return view(request, *args, **kwargs)

    return wrapper


def portal_client(user: User) -> Client | None:
    link = ClientUser.objects.select_related("client").filter(user=user).first()
    return link.client if link else None


def visible_clients(user: User) -> QuerySet[Client]:
    """The clients a staff user may see (ROLE-1: salespeople only their own)."""
    return Client.objects.filter(client_visibility(user=user))


def visible_invoices(user: User) -> QuerySet[Invoice]:
    """The client invoices a staff user may see: the same rule on the invoice's own client. Not
    `client__in=visible_clients(user)`: for roles that see every client that is a join and a semi-join over all
    clients, whose planning alone was a third of serving a stored PDF (docs/performance.md, P4)."""
    return Invoice.objects.filter(client_visibility(user=user, path="client__"))


def shows_amounts(user: User) -> bool:
    return has_capability(user, Capability.VIEW_AMOUNTS)


def business_today(agency: Agency) -> date:
    """The agency's business day now: the rule of `tenants.selectors.agency_business_date`."""
    return agency_business_date(agency, timezone.now())
