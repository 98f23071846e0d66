"""Email Templates: the notice editor with its live preview."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.notice_previews import notice_preview_context
from clients.models import Client
from core.errors import ApplicationError
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import NoticeTemplate
from notifications.rendering import TemplateInvalid
from notifications.services import notice_preview, notice_template_reset, notice_template_save, notice_test_send
from web.access import business_today, staff_view
from web.agency.common import C
from web.forms import (
    TemplateForm,
)


@staff_view(C.ADMINISTER)
def template_list(request: HttpRequest) -> HttpResponse:
    custom = {t.kind: t for t in NoticeTemplate.objects.all()}
    kinds = [{"kind": k, "label": NoticeKind(k).label, "custom": custom.get(k)} for k in CATALOG]
    return render(request, "agency/template_list.html", {"kinds": kinds})


def _kind_or_404(kind: str) -> str:
    if kind not in CATALOG:
        raise Http404
    return kind


def _preview(request: HttpRequest, kind: str, form: TemplateForm) -> dict:
    """Render the draft against a real client's data (the chosen one, or the first)."""
    client = form.cleaned_data.get("client") if form.is_bound and form.is_valid() else None
    client = client or Client.objects.order_by("name").first()
    if client is None:
        return {"preview_error": "Add a client to preview with real data."}
    # What was typed, even when a field error has removed it from cleaned_data.
    source = form.data if form.is_bound else form.initial
    subject, body = str(source.get("subject", "")), str(source.get("body", ""))
    context = notice_preview_context(client=client, kind=kind, today=business_today(request.tenant))  # type: ignore[attr-defined]
    try:
        rendered = notice_preview(kind=kind, subject=subject, body=body, context=context)
    except TemplateInvalid as exc:
        return {"preview_client": client, "preview_fields": exc.fields}
    return {"preview_client": client, "preview": rendered}


@staff_view(C.ADMINISTER)
def template_edit(request: HttpRequest, kind: str) -> HttpResponse:
    kind = _kind_or_404(kind)
    spec = CATALOG[kind]
    custom = NoticeTemplate.objects.filter(kind=kind).first()
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "reset":
            notice_template_reset(kind=kind, actor=request.user)
            messages.success(request, "Back to the default template.")
            return redirect("template-edit", kind=kind)
        form = TemplateForm(request.POST)
        if form.is_valid():
            try:
                notice_template_save(
                    kind=kind, subject=form.cleaned_data["subject"], body=form.cleaned_data["body"], actor=request.user
                )
            except ApplicationError as exc:
                form.apply_error(exc)
            else:
                messages.success(request, "Template saved.")
                return redirect("template-edit", kind=kind)
        status = 400
    else:
        form = TemplateForm(
            initial={
                # The select shows the client the preview uses (the first one by name).
                "client": Client.objects.order_by("name").first(),
                "subject": custom.subject if custom else spec.subject,
                "body": custom.body if custom else spec.body,
            }
        )
    context = {"kind": kind, "label": NoticeKind(kind).label, "spec": spec, "form": form, "custom": custom}
    if form.is_bound:
        form.is_valid()
    context.update(_preview(request, kind, form))
    return render(request, "agency/template_edit.html", context, status=status)


@require_POST
@staff_view(C.ADMINISTER)
def template_preview(request: HttpRequest, kind: str) -> HttpResponse:
    """The live preview (htmx): the draft rendered with the chosen client's data, or its errors."""
    kind = _kind_or_404(kind)
    form = TemplateForm(request.POST)
    form.is_valid()
    return render(request, "agency/_template_preview.html", {"kind": kind, **_preview(request, kind, form)})


@require_POST
@staff_view(C.ADMINISTER)
def template_test_email(request: HttpRequest, kind: str) -> HttpResponse:
    """Send the draft as it stands — rendered with the chosen client's data, in the branded layout — to the
    signed-in Administrator's own address. Nothing is saved; the editor comes back with the draft as typed."""
    kind = _kind_or_404(kind)
    spec = CATALOG[kind]
    form = TemplateForm(request.POST)
    status = 200
    if form.is_valid():
        client = form.cleaned_data.get("client") or Client.objects.order_by("name").first()
        if client is None:
            form.add_error("client", "Add a client first: the test email uses a client's real data.")
            status = 400
        else:
            context = notice_preview_context(client=client, kind=kind, today=business_today(request.tenant))  # type: ignore[attr-defined]
            try:
                notice_test_send(
                    kind=kind,
                    subject=form.cleaned_data["subject"],
                    body=form.cleaned_data["body"],
                    context=context,
                    to_email=request.user.email,  # type: ignore[union-attr]
                    agency=request.tenant,  # type: ignore[attr-defined]
                )
            except ApplicationError as exc:
                form.apply_error(exc)
                status = 400
            except OSError as exc:  # the mail server could not be reached
                messages.error(request, f"The test email could not be sent: {exc}.")
                status = 502
            else:
                messages.success(request, f"Test email sent to {request.user.email} with {client.name}'s data.")  # type: ignore[union-attr]
    else:
        status = 400
    custom = NoticeTemplate.objects.filter(kind=kind).first()
    context = {"kind": kind, "label": NoticeKind(kind).label, "spec": spec, "form": form, "custom": custom}
    context.update(_preview(request, kind, form))
    return render(request, "agency/template_edit.html", context, status=status)
