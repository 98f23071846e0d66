"""DUN-1 and a lost dispute (COR-2): the chargeback makes the client owe the disputed payment again, and what it
reopened is past due once the grace period has passed counting from the day the dispute was lost (the day the
client owes it again, as a charge from its billing date), so a charged-back client is flagged overdue and told."""

from __future__ import annotations

from datetime import date

import pytest
from django_tenants.utils import tenant_context

from billing.books import client_overdue_state
from billing.dunning import overdue_evaluate
from billing.models import BillingSettings, Dispute
from billing.providers.sandbox import SandboxProvider
from billing.statuses import DisputeStatus
from clients.models import Client
from notifications.catalog import NoticeKind
from notifications.models import Notice
from tests.integration.test_credit_notes import run_day
from tests.integration.test_disputes import agency, disputed  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

LOST = date(2027, 1, 4)


def _flag(tenant, client) -> date | None:
    with tenant_context(tenant):
        return Client.objects.get(pk=client.pk).overdue_since


def test_DUN_1_a_lost_disputes_amount_is_past_due_after_the_grace_period_from_the_day_it_was_lost(agency, disputed):  # noqa: F811
    with tenant_context(agency):
        BillingSettings.objects.update(grace_period_days=3, overdue_threshold_minor=5_000)
        # Paid on the 1st, nothing past due: the day's evaluation flags nobody.
        overdue_evaluate(agency=agency, today=date(2027, 1, 2))
    assert _flag(agency, disputed) is None
    SandboxProvider.dispute_decide(_ref(agency), "lost")
    run_day(agency, LOST)
    with tenant_context(agency):
        assert Dispute.objects.get().status == DisputeStatus.LOST
        # The grace period counts from the day it was lost (the billing date of the 1st would already be past it).
        overdue_evaluate(agency=agency, today=date(2027, 1, 7))
    assert _flag(agency, disputed) is None
    with tenant_context(agency):
        overdue_evaluate(agency=agency, today=date(2027, 1, 8))
        state = client_overdue_state(client=Client.objects.get(pk=disputed.pk), today=date(2027, 1, 8))
        assert (state.past_due_minor, state.oldest_past_due_on, state.reached) == (10_000, LOST, True)
        notice = Notice.objects.get(kind=NoticeKind.ACCOUNT_OVERDUE)
        assert "100.00" in notice.body
    assert _flag(agency, disputed) == date(2027, 1, 8)


def _ref(tenant) -> str:
    with tenant_context(tenant):
        return Dispute.objects.get().reference
