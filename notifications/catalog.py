"""Every notice the product sends, its documented variables, and its default template (SPEC §8).

Templates may reach only these variables: they are plain values (strings, numbers, lists of dicts of
strings) built by the caller, never model instances.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class NoticeKind(models.TextChoices):
    UPCOMING_STATEMENT = "UPCOMING_STATEMENT", "Upcoming Statement"
    UPCOMING_PAYMENT = "UPCOMING_PAYMENT", "Upcoming Payment"
    PAYMENT_RECEIVED = "PAYMENT_RECEIVED", "Payment Received"
    PAYMENT_FAILED = "PAYMENT_FAILED", "Payment Failed"
    ACCOUNT_OVERDUE = "ACCOUNT_OVERDUE", "Account Overdue"
    AGENCY_CHARGE_FAILED = "AGENCY_CHARGE_FAILED", "Client charge failed (to the agency)"
    AGENCY_CHARGE_UNCOLLECTABLE = "AGENCY_CHARGE_UNCOLLECTABLE", "Client charge uncollectable (to the agency)"
    INVITATION = "INVITATION", "Invitation to choose a password"
    PAYOUT_FAILED = "PAYOUT_FAILED", "Payout failed (to the agency)"
    PLATFORM_PAYMENT_RECEIVED = "PLATFORM_PAYMENT_RECEIVED", "Platform invoice paid (to the agency)"
    PLATFORM_PAYMENT_FAILED = "PLATFORM_PAYMENT_FAILED", "Platform invoice payment failed (to the agency)"
    PLATFORM_PAYMENT_UNCOLLECTABLE = (
        "PLATFORM_PAYMENT_UNCOLLECTABLE",
        "Platform invoice uncollectable (to the agency)",
    )
    CREDIT_NOTE_ISSUED = "CREDIT_NOTE_ISSUED", "Credit note issued"
    AGENCY_CREDIT_NOTE_ISSUED = "AGENCY_CREDIT_NOTE_ISSUED", "Credit note issued (to the agency)"
    AGENCY_REFUND_FAILED = "AGENCY_REFUND_FAILED", "Refund failed (to the agency)"
    AGENCY_DISPUTE_OPENED = "AGENCY_DISPUTE_OPENED", "Charge disputed (to the agency)"
    AGENCY_DISPUTE_CLOSED = "AGENCY_DISPUTE_CLOSED", "Dispute closed (to the agency)"


COMMON = {
    "agency_name": "The agency's name",
    "client_name": "The client's name",
    "currency": "ISO currency code, e.g. USD",
    "portal_url": "Link to the client's Monthly Service Overview",
}


# The variables of notices the agency receives about its own account with the platform.
AGENCY_COMMON = {
    "agency_name": "The agency's name",
    "currency": "ISO currency code, e.g. USD",
    "setup_url": "Link to the agency's Billing Setup page",
}
PLATFORM_CHARGE = {
    **AGENCY_COMMON,
    "amount": "Amount of the platform invoice's charge",
    "invoice_number": "Platform invoice number",
    "payment_method": "e.g. Visa ···· 4242, or 'no payment method on file'",
}


CREDIT_NOTE = {
    **COMMON,
    "credit_note_number": "Credit note number",
    "invoice_number": "The invoice it corrects",
    "amount": "Amount credited",
    "reason": "Why the invoice was corrected",
    "outcome": "Where the money goes, e.g. 'refunded to Visa ···· 4242' or 'kept as credit on your account'",
    "issued_on": "Date (YYYY-MM-DD)",
}
DISPUTE = {
    **COMMON,
    "amount": "Amount disputed",
    "invoice_number": "Invoice number of the disputed charge",
    "dispute_reason": "The card holder's reason, e.g. fraudulent",
    "invoice_url": "Link to the invoice page",
}


@dataclass(frozen=True)
class NoticeSpec:
    variables: dict[str, str]
    subject: str
    body: str


CATALOG: dict[str, NoticeSpec] = {
    NoticeKind.UPCOMING_STATEMENT: NoticeSpec(
        {
            **COMMON,
            "billing_date": "The billing date (YYYY-MM-DD)",
            "statement_total": "Invoice to be built",
            "open_balance": "Balance still open",
            "amount_due": "Statement total plus open balance",
            "lines": "List of {description, amount, quantity, unit_price, detail} of the upcoming invoice; detail is "
            '"98,765 × 0.000875" for usage lines, empty otherwise',
            "notice_number": "1, 2 or 3",
        },
        "Your upcoming statement from {{ agency_name }}",
        "Hello {{ client_name }},\n\nYour next statement is dated {{ billing_date }}.\n"
        "{% for line in lines %}- {{ line.description }}{% if line.detail %} ({{ line.detail }}){% endif %}: "
        "{{ line.amount }} {{ currency }}\n{% endfor %}"
        "Statement: {{ statement_total }} {{ currency }}. Open balance: {{ open_balance }} {{ currency }}.\n"
        "Amount due: {{ amount_due }} {{ currency }}.\n\nDetails: {{ portal_url }}\n\n{{ agency_name }}",
    ),
    NoticeKind.UPCOMING_PAYMENT: NoticeSpec(
        {
            **COMMON,
            "billing_date": "The billing date (YYYY-MM-DD)",
            "amount_due": "Amount that will be charged",
            "payment_method": "e.g. Visa ···· 4242",
        },
        "Payment of {{ amount_due }} {{ currency }} on {{ billing_date }}",
        "Hello {{ client_name }},\n\nOn {{ billing_date }} we will charge {{ amount_due }} {{ currency }} to "
        "{{ payment_method }}.\n\n{{ agency_name }}",
    ),
    NoticeKind.PAYMENT_RECEIVED: NoticeSpec(
        {**COMMON, "amount": "Amount received", "invoice_number": "Invoice number", "paid_on": "Date"},
        "Payment received — thank you",
        "Hello {{ client_name }},\n\nWe received {{ amount }} {{ currency }} for invoice {{ invoice_number }} "
        "on {{ paid_on }}.\nYour invoices and receipts: {{ portal_url }}\n\n{{ agency_name }}",
    ),
    NoticeKind.PAYMENT_FAILED: NoticeSpec(
        {
            **COMMON,
            "amount": "Amount attempted",
            "invoice_number": "Invoice number",
            "next_retry_on": "Next automatic attempt, or empty",
            "reason": "Why it failed, in words for the cardholder (e.g. Your card was declined)",
            "needs_confirmation": "'yes' when the bank asks the cardholder to confirm the payment (3-D Secure)",
            "pay_url": "Link to pay (or confirm) this charge now in the portal",
            "attempt_number": "The attempt's number, or empty when no attempt could be made (no payment method)",
        },
        "{% if needs_confirmation %}Please confirm your payment of {{ amount }} {{ currency }}"
        "{% else %}Your payment of {{ amount }} {{ currency }} failed{% endif %}",
        "Hello {{ client_name }},\n\n{% if not attempt_number %}We could not collect {{ amount }} {{ currency }} "
        "for invoice {{ invoice_number }}: there is no payment method on file.\nAdd one and pay here: {{ pay_url }}"
        "\n{% elif needs_confirmation %}Your bank asks you to confirm the payment of {{ amount }} {{ currency }} for "
        "invoice {{ invoice_number }} before it can be made.\nConfirm it here: {{ pay_url }}\n{% else %}"
        "We could not collect {{ amount }} {{ currency }} for invoice {{ invoice_number }}: {{ reason }}.\n"
        "{% if next_retry_on %}We will try again on {{ next_retry_on }}.\n{% endif %}"
        "Pay now, or use another card: {{ pay_url }}\n{% endif %}\n{{ agency_name }}",
    ),
    NoticeKind.ACCOUNT_OVERDUE: NoticeSpec(
        {
            **COMMON,
            "past_due": "Past-due balance",
            "billing_date": "The billing date it was due",
            "notice_number": "1, 2 or 3",
        },
        "Your account is overdue",
        "Hello {{ client_name }},\n\nYour account has a past-due balance of {{ past_due }} {{ currency }} "
        "(due {{ billing_date }}).\nPlease pay it here: {{ portal_url }}\n\n{{ agency_name }}",
    ),
    NoticeKind.AGENCY_CHARGE_FAILED: NoticeSpec(
        {
            **COMMON,
            "amount": "Amount attempted",
            "invoice_number": "Invoice number",
            "reason": "Why it failed, as the processor reports it",
            "attempt_number": "The attempt's number, or empty when no attempt could be made (no payment method)",
            "next_retry_on": "Next automatic attempt, or empty",
            "charge_url": "Link to the invoice and its charge in the agency dashboard",
        },
        "{% if attempt_number %}Charge failed{% else %}No payment method{% endif %}: {{ client_name }}, "
        "{{ amount }} {{ currency }}",
        "Hello,\n\n{% if attempt_number %}We could not collect {{ amount }} {{ currency }} from {{ client_name }} "
        "for invoice {{ invoice_number }} (attempt {{ attempt_number }}): {{ reason }}\n"
        "{% if next_retry_on %}The next automatic attempt is on {{ next_retry_on }}; {{ client_name }} has been "
        "told and can pay at once in the portal.\n{% endif %}{% else %}{{ client_name }} has no payment method on "
        "file, so {{ amount }} {{ currency }} for invoice {{ invoice_number }} could not be collected. They have been "
        "asked to add one.\n{% endif %}\nThe charge: {{ charge_url }}\n\n{{ agency_name }} billing",
    ),
    NoticeKind.AGENCY_CHARGE_UNCOLLECTABLE: NoticeSpec(
        {
            **COMMON,
            "amount": "Amount",
            "invoice_number": "Invoice number",
            "reason": "Why",
            "charge_url": "Link to the invoice and its charge in the agency dashboard",
        },
        "Uncollectable: {{ client_name }}, {{ amount }} {{ currency }}",
        "Hello,\n\nThe charge of {{ amount }} {{ currency }} to {{ client_name }} (invoice {{ invoice_number }}) is "
        "now Uncollectable: {{ reason }}\nNo further automatic attempts will be made. {{ client_name }} can still pay "
        "it in the portal, and you can request a retry from the charge's page.\n\nThe charge: {{ charge_url }}\n\n"
        "{{ agency_name }} billing",
    ),
    NoticeKind.INVITATION: NoticeSpec(
        {
            "agency_name": "The agency's name (or the platform's, for billing support)",
            "invitee_name": "The invited person's name, or their email address",
            "role": "The role they are invited as, e.g. Administrator",
            "invite_url": "The one-time link to choose a password",
            "expires_on": "The last day the link works (YYYY-MM-DD)",
        },
        "You are invited to {{ agency_name }} billing",
        "Hello {{ invitee_name }},\n\nYou have been invited to {{ agency_name }}'s billing as {{ role }}.\n"
        "Choose your password here: {{ invite_url }}\n\nThe link works once, until {{ expires_on }}.\n",
    ),
    NoticeKind.PAYOUT_FAILED: NoticeSpec(
        {
            **AGENCY_COMMON,
            "amount": "Amount of the payout",
            "payout_reference": "The processor's payout id",
            "reason": "Why the bank refused it",
            "charge_count": "How many client charges the payout carried",
            "payouts_url": "Link to the Payouts page",
        },
        "A payout of {{ amount }} {{ currency }} failed",
        "Hello,\n\nThe payout {{ payout_reference }} of {{ amount }} {{ currency }} ({{ charge_count }} client "
        "charges) could not be paid to your bank account: {{ reason }}.\nThe money is safe and is paid out again "
        "once your payout details are correct. Check them here: {{ setup_url }}\nPayouts: {{ payouts_url }}\n\n"
        "{{ agency_name }} billing",
    ),
    NoticeKind.PLATFORM_PAYMENT_RECEIVED: NoticeSpec(
        {**PLATFORM_CHARGE, "paid_on": "Date"},
        "Platform invoice {{ invoice_number }} paid",
        "Hello,\n\nWe received {{ amount }} {{ currency }} for your platform invoice {{ invoice_number }} on "
        "{{ paid_on }}, from {{ payment_method }}.\n\nThank you.",
    ),
    NoticeKind.PLATFORM_PAYMENT_FAILED: NoticeSpec(
        {**PLATFORM_CHARGE, "reason": "Why it failed", "next_retry_on": "Next automatic attempt, or empty"},
        "Payment of platform invoice {{ invoice_number }} failed",
        "Hello,\n\nWe could not collect {{ amount }} {{ currency }} for your platform invoice {{ invoice_number }} "
        "from {{ payment_method }} ({{ reason }}).\n{% if next_retry_on %}We will try again on {{ next_retry_on }}.\n"
        "{% endif %}Check your payment method here: {{ setup_url }}\n",
    ),
    NoticeKind.PLATFORM_PAYMENT_UNCOLLECTABLE: NoticeSpec(
        {**PLATFORM_CHARGE, "reason": "Why"},
        "Platform invoice {{ invoice_number }} is unpaid",
        "Hello,\n\nYour platform invoice {{ invoice_number }} of {{ amount }} {{ currency }} could not be "
        "collected ({{ reason }}). No further automatic attempts will be made.\nSave a payment method here: "
        "{{ setup_url }} and billing support will retry it on request.\n",
    ),
    NoticeKind.CREDIT_NOTE_ISSUED: NoticeSpec(
        CREDIT_NOTE,
        "Credit note {{ credit_note_number }} from {{ agency_name }}",
        "Hello {{ client_name }},\n\nWe issued credit note {{ credit_note_number }} of {{ amount }} {{ currency }} "
        "for invoice {{ invoice_number }} on {{ issued_on }}: {{ reason }}.\nThe amount is {{ outcome }}.\n\n"
        "Details: {{ portal_url }}\n\n{{ agency_name }}",
    ),
    NoticeKind.AGENCY_CREDIT_NOTE_ISSUED: NoticeSpec(
        {**CREDIT_NOTE, "issued_by": "Who issued it", "invoice_url": "Link to the invoice page"},
        "Credit note {{ credit_note_number }}: {{ client_name }}",
        "{{ issued_by }} issued credit note {{ credit_note_number }} of {{ amount }} {{ currency }} to "
        "{{ client_name }} for invoice {{ invoice_number }}: {{ reason }}.\nThe amount is {{ outcome }}.\n"
        "Invoice: {{ invoice_url }}",
    ),
    NoticeKind.AGENCY_REFUND_FAILED: NoticeSpec(
        {
            **COMMON,
            "credit_note_number": "Credit note number",
            "invoice_number": "The invoice it corrects",
            "amount": "Amount that could not be refunded",
            "reason": "Why the refund failed",
            "invoice_url": "Link to the invoice page",
        },
        "Refund failed: {{ client_name }}",
        "The refund of {{ amount }} {{ currency }} to {{ client_name }} (credit note {{ credit_note_number }}, "
        "invoice {{ invoice_number }}) failed: {{ reason }}.\nThe amount is kept as credit on the client's account "
        "and used by its next invoice.\nInvoice: {{ invoice_url }}",
    ),
    NoticeKind.AGENCY_DISPUTE_OPENED: NoticeSpec(
        {**DISPUTE, "due_by": "The last day to respond (YYYY-MM-DD)"},
        "Charge disputed: {{ client_name }}",
        "{{ client_name }}'s card issuer disputes the payment of {{ amount }} {{ currency }} for invoice "
        "{{ invoice_number }} ({{ dispute_reason }}).\nEvidence is due by {{ due_by }}. If the dispute is lost, "
        "the amount is taken back from your payouts and the client's balance is open again.\n"
        "Invoice: {{ invoice_url }}",
    ),
    NoticeKind.AGENCY_DISPUTE_CLOSED: NoticeSpec(
        {**DISPUTE, "outcome": "won or lost", "recovered": "What was taken back from the agency, or empty"},
        "Dispute {{ outcome }}: {{ client_name }}",
        "The dispute of {{ client_name }}'s payment of {{ amount }} {{ currency }} for invoice {{ invoice_number }} "
        "is closed: {{ outcome }}.\n{% if recovered %}{{ recovered }} was taken back from your payouts and the "
        "client's balance is open again.\n{% endif %}Invoice: {{ invoice_url }}",
    ),
}
