"""Webhooks (Administrator): the agency's endpoints and the events each wants, the delivery log with every
attempt, and redelivery — the same services as the API's webhook-endpoints and webhook-deliveries."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from integrations.models import DeliveryStatus, EventKind, WebhookDelivery
from integrations.selectors import delivery_list, endpoint_list
from integrations.services import delivery_redeliver, endpoint_create, endpoint_remove, endpoint_update
from web.access import staff_view
from web.agency.common import C
from web.confirm import confirm_page, confirmed
from web.forms import WebhookEndpointForm


def _page(request: HttpRequest, *, form=None, secret: str = "", status: int = 200) -> HttpResponse:
    filter_status = request.GET.get("status", "")
    filter_status = filter_status if filter_status in DeliveryStatus.values else ""
    deliveries = delivery_list(status=filter_status or None).order_by("-created_at", "-id")
    return render(
        request,
        "agency/webhooks.html",
        {
            "endpoints": list(endpoint_list().order_by("created_at", "id")),
            "form": form or WebhookEndpointForm(),
            "secret": secret,
            "page": Paginator(deliveries, 25).get_page(request.GET.get("page")),
            "statuses": DeliveryStatus.choices,
            "filter_status": filter_status,
            "kinds": dict(EventKind.choices),
        },
        status=status,
    )


@staff_view(C.ADMINISTER)
def webhooks(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint, secret = endpoint_create(
                url=form.cleaned_data["url"].strip(),
                description=form.cleaned_data["description"],
                event_kinds=form.cleaned_data["event_kinds"],
                created_by=request.user.email,  # type: ignore[union-attr]
            )
        except ApplicationError as exc:
            form.apply_error(exc)
        else:
            messages.success(request, f"Endpoint {endpoint.url} added. Copy its signing secret now: it is shown once.")
            return _page(request, secret=secret)
    return _page(request, form=form, status=400)


@require_POST
@staff_view(C.ADMINISTER)
def webhook_endpoint_action(request: HttpRequest, public_id) -> HttpResponse:
    """Pause, resume or remove an endpoint (removing asks first; its delivery log stays)."""
    endpoint = get_object_or_404(endpoint_list(), public_id=public_id)
    action = request.POST.get("action")
    if action == "remove":
        if not confirmed(request):
            return confirm_page(
                request,
                title=f"Remove {endpoint.url}?",
                message="No more events are sent to it. Its delivery log stays.",
                action_label="Remove endpoint",
                cancel_url=reverse("webhooks"),
            )
        endpoint_remove(endpoint=endpoint, now=timezone.now())
        messages.success(request, f"Endpoint {endpoint.url} removed.")
    elif action in ("pause", "resume"):
        endpoint_update(endpoint=endpoint, is_active=action == "resume")
        messages.success(request, f"Endpoint {endpoint.url} {'resumed' if action == 'resume' else 'paused'}.")
    return redirect("webhooks")


@staff_view(C.ADMINISTER)
def webhook_delivery(request: HttpRequest, public_id) -> HttpResponse:
    """One delivery: its event's payload and every attempt, with Redeliver."""
    delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint", "event"), public_id=public_id)
    if request.method == "POST":
        try:
            delivery_redeliver(delivery=delivery)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Sent again. The attempt appears below in a moment.")
        return redirect("webhook-delivery", public_id=delivery.public_id)
    return render(
        request,
        "agency/webhook_delivery.html",
        {
            "delivery": delivery,
            "attempts": list(delivery.attempts.all()),
            "payload": json.dumps(delivery.event.payload, indent=2, sort_keys=True, default=str),
            "kinds": dict(EventKind.choices),
        },
    )
