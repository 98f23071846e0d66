"""Users: invitations, roles, deactivation."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import AGENCY_STAFF_ROLES, User
from accounts.services import user_active_set, user_invite, user_role_set
from core.errors import ApplicationError
from tenants.onboarding import user_invitation_send
from web.access import staff_view
from web.agency.common import C
from web.confirm import confirm_page, confirmed
from web.forms import (
    InviteForm,
    RoleForm,
)


@staff_view(C.ADMINISTER)
def user_list(request: HttpRequest) -> HttpResponse:
    status = 200
    form = InviteForm()
    if request.method == "POST":
        form = InviteForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                user_invite(
                    email=data["email"],
                    role=data["role"],
                    actor=request.user,  # type: ignore[arg-type]
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    client=data["client"],
                    send=lambda user: user_invitation_send(user=user, actor=request.user, now=timezone.now()),
                )
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, f"Invitation sent to {data['email'].strip().lower()}.")
                return redirect("user-list")
        status = 400
    users = (
        User.objects.filter(role__in=[*AGENCY_STAFF_ROLES, "CLIENT"])
        .select_related("client_link__client")
        .order_by("role", "email")
    )
    return render(request, "agency/users.html", {"users": users, "form": form, "role_form": RoleForm()}, status=status)


@require_POST
@staff_view(C.ADMINISTER)
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            user_role_set(user=target, role=form.cleaned_data["role"], actor=request.user)  # type: ignore[arg-type]
        except ApplicationError as exc:
            messages.error(request, f"{target.email}: {exc.message}")
        else:
            label = dict(form.fields["role"].choices)[form.cleaned_data["role"]]  # type: ignore[attr-defined]
            messages.success(request, f"{target.email} is now {label}.")
    else:
        messages.error(request, "Choose a role.")
    return redirect("user-list")


@require_POST
@staff_view(C.ADMINISTER)
def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    target = get_object_or_404(User, pk=user_id)
    if request.POST.get("active") != "1" and not confirmed(request):
        return confirm_page(
            request,
            title=f"Deactivate {target.email}?",
            message="They can no longer sign in, and their API tokens stop working. You can reactivate them later.",
            action_label="Deactivate user",
            cancel_url=reverse("user-list"),
        )
    try:
        user_active_set(user=target, active=request.POST.get("active") == "1", actor=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        messages.error(request, f"{target.email}: {exc.message}")
    else:
        done = "reactivated" if request.POST.get("active") == "1" else "deactivated"
        messages.success(request, f"{target.email} {done}.")
    return redirect("user-list")
