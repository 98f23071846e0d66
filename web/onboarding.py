"""The billing-support console's onboarding pages (ONB-1): a form that creates an agency with its plan and first
Administrator, and each agency's invitations (resend, revoke) on its console page."""

from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_tenants.utils import tenant_context

from accounts.invitations import invitation_revoke
from accounts.models import Invitation, Role, User
from core.errors import ApplicationError
from tenants.models import Agency, PartnerPlan
from tenants.onboarding import agency_onboard, invitation_resend
from web.access import support_view
from web.forms import ServiceForm, day_choices


def time_zone_choices() -> list[tuple[str, str]]:
    """Real places (Region/City) and UTC, not the aliases and legacy names zoneinfo also knows ("Factory")."""
    zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
    return [("UTC", "UTC"), *((z, z.replace("_", " ")) for z in zones)]


class NewAgencyForm(ServiceForm):
    field_map = {"admin_email": "admin_email"}

    name = forms.CharField(label="Agency name", max_length=200)
    slug = forms.CharField(
        label="Slug",
        max_length=40,
        help_text="2–40 lowercase letters or digits, starting with a letter: the agency's address <slug>.<domain>.",
    )
    plan = forms.ModelChoiceField(
        queryset=PartnerPlan.objects.none(), label="Partner plan", empty_label="Choose a plan"
    )
    time_zone = forms.ChoiceField(label="Time zone", help_text="Billing days are this time zone's calendar days.")
    billing_day = forms.TypedChoiceField(label="Billing day", choices=day_choices(), coerce=int, initial=1)
    email = forms.EmailField(label="Billing contact (optional)", required=False)
    admin_email = forms.EmailField(label="Administrator's email", help_text="Mailed a link to choose a password.")
    admin_first_name = forms.CharField(label="Administrator's first name", max_length=150, required=False)
    admin_last_name = forms.CharField(label="Administrator's last name", max_length=150, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = PartnerPlan.objects.order_by("name")  # type: ignore[attr-defined]
        self.fields["time_zone"].choices = time_zone_choices()  # type: ignore[attr-defined]
        self.fields["time_zone"].initial = "UTC"

    def apply_error(self, exc: ApplicationError) -> None:
        if "currency" in exc.fields:  # the currency follows the plan: its problem is the plan's
            exc.fields.setdefault("plan", []).extend(exc.fields.pop("currency"))
        super().apply_error(exc)


@support_view
def agency_new(request: HttpRequest) -> HttpResponse:
    form = NewAgencyForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                onboarded = agency_onboard(
                    slug=data["slug"].strip(),
                    name=data["name"],
                    plan=data["plan"],
                    admin_email=data["admin_email"],
                    admin_first_name=data["admin_first_name"],
                    admin_last_name=data["admin_last_name"],
                    time_zone=data["time_zone"],
                    billing_day=data["billing_day"],
                    email=data["email"] or "",
                    actor=request.user,  # type: ignore[arg-type]
                    now=timezone.now(),
                )
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(
                    request,
                    f"{onboarded.agency.name} created. An invitation to choose a password was mailed to "
                    f"{onboarded.administrator.email}.",
                )
                return redirect("console-agency", slug=onboarded.agency.schema_name)
        status = 400
    return render(request, "console/agency_new.html", {"form": form}, status=status)


def agency_onboarding_context(agency: Agency) -> dict:
    """What the console's agency page shows of onboarding: the agency's staff invitations, newest first."""
    now = timezone.now()
    with tenant_context(agency):
        invitations = list(Invitation.objects.select_related("user").order_by("-created_at")[:20])
        administrators = list(User.objects.filter(role=Role.ADMINISTRATOR).order_by("email"))
    for invitation in invitations:
        invitation.status = invitation.status_at(now)  # type: ignore[attr-defined]
    return {"invitations": invitations, "administrators": administrators}


@require_POST
@support_view
def agency_invitation_action(request: HttpRequest, slug: str, invitation_id) -> HttpResponse:
    agency = get_object_or_404(Agency.objects.exclude(schema_name="public"), schema_name=slug)
    action = request.POST.get("action")
    with tenant_context(agency):
        invitation = get_object_or_404(Invitation.objects.select_related("user"), public_id=invitation_id)
        try:
            if action == "resend":
                invitation_resend(invitation=invitation, actor=request.user, now=timezone.now())  # type: ignore[arg-type]
                messages.success(
                    request, f"A new invitation was mailed to {invitation.user.email}; the old link no longer works."
                )
            elif action == "revoke":
                invitation_revoke(invitation=invitation, actor=request.user, now=timezone.now())  # type: ignore[arg-type]
                messages.success(request, f"The invitation of {invitation.user.email} was withdrawn.")
            else:
                messages.error(request, "Choose Resend or Revoke.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return redirect("console-agency", slug=slug)
