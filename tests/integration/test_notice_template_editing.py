"""Editing notice templates (SPEC §8): refused drafts change nothing, saves are audited, the preview uses a
real client's data, and a custom template is what the next notice uses."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import schema_context

from accounts.models import AuditEntry, Role
from billing.notice_previews import notice_preview_context
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import NoticeTemplate
from notifications.rendering import TemplateInvalid
from notifications.services import notice_preview, notice_template_reset, notice_template_save
from tests.billing_helpers import client_create, with_plan
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ settings.SECRET_KEY }}",
    "{{ client_name.__class__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ lines.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ namespace }}{{ range(10) }}",
]


@pytest.fixture
def admin(agency_a):
    return make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)


@pytest.mark.parametrize("payload", SSTI)
def test_SSTI_payloads_are_refused_on_save_and_nothing_is_stored(agency_a, admin, payload):
    with schema_context(agency_a.schema_name):
        with pytest.raises(TemplateInvalid) as refused:
            notice_template_save(kind=NoticeKind.PAYMENT_RECEIVED, subject="Thanks", body=payload, actor=admin)
        assert refused.value.fields["body"]
        assert not NoticeTemplate.objects.exists() and not AuditEntry.objects.exists()


def test_a_syntax_error_is_refused_with_its_line_number(agency_a, admin):
    with schema_context(agency_a.schema_name):
        with pytest.raises(TemplateInvalid) as refused:
            notice_template_save(
                kind=NoticeKind.PAYMENT_FAILED,
                subject="Failed",
                body="Hello {{ client_name }},\n\nline two\n{% if amount %}no end",
                actor=admin,
            )
        assert refused.value.fields["body"][0].startswith("Line 4:")
        assert not NoticeTemplate.objects.exists()


def test_save_is_audited_and_reset_returns_to_the_default(agency_a, admin):
    with schema_context(agency_a.schema_name):
        notice_template_save(
            kind=NoticeKind.PAYMENT_RECEIVED,
            subject="Paid: {{ amount }} {{ currency }}",
            body="Thanks {{ client_name }}.",
            actor=admin,
        )
        notice_template_save(
            kind=NoticeKind.PAYMENT_RECEIVED,
            subject="Paid {{ amount }}",
            body="Thanks again {{ client_name }}.",
            actor=admin,
        )
        assert NoticeTemplate.objects.get().subject == "Paid {{ amount }}"
        audit = list(AuditEntry.objects.order_by("id").values_list("actor", "action", "before", "after"))
        assert audit[0][:2] == ("admin@alpha.test", "notice_template.save") and audit[0][2] == {}
        assert audit[1][2] == {"subject": "Paid: {{ amount }} {{ currency }}", "body": "Thanks {{ client_name }}."}
        notice_template_reset(kind=NoticeKind.PAYMENT_RECEIVED, actor=admin)
        assert not NoticeTemplate.objects.exists()
        assert AuditEntry.objects.filter(action="notice_template.reset").count() == 1


def test_preview_uses_the_clients_real_upcoming_statement(agency_a, admin):
    agency = with_plan(agency_a)
    with schema_context(agency.schema_name):
        client = client_create(
            name="Preview Co", email="p@example.com", activated_on=date(2026, 12, 1), license_price_minor=12345
        )
        context = notice_preview_context(client=client, kind=NoticeKind.UPCOMING_STATEMENT, today=date(2027, 1, 20))
        assert set(context) == set(CATALOG[NoticeKind.UPCOMING_STATEMENT].variables)
        assert context["client_name"] == "Preview Co" and context["billing_date"] == "2027-02-01"
        assert context["statement_total"] == "123.45"
        rendered = notice_preview(
            kind=NoticeKind.UPCOMING_STATEMENT,
            subject="{{ client_name }}: {{ amount_due }}",
            body="{% for l in lines %}{{ l.description }}={{ l.amount }};{% endfor %}",
            context=context,
        )
        assert rendered.subject == "Preview Co: 123.45"
        assert "=123.45;" in rendered.body
        with pytest.raises(TemplateInvalid):
            notice_preview(kind=NoticeKind.UPCOMING_STATEMENT, subject="x", body="{{ config }}", context=context)
