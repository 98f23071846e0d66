"""Template helpers shared by every page: money, status badges, month labels, form fields."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django import template
from django.utils.html import format_html

from billing.statuses import ChargeStatus, DisputeStatus
from core.money import format_minor, format_rate, format_unit_price
from web.wording import decline_reason

register = template.Library()


@register.filter
def money(amount_minor, currency: str = "USD") -> str:
    """Minor units → "1,234.56" in the currency's own exponent (MON-1)."""
    if amount_minor is None or amount_minor == "":
        return "—"
    return format_minor(int(amount_minor), currency)


@register.simple_tag
def status_badge(status: str) -> str:
    """One colour per charge status; the text says the status too (colour is never the only cue)."""
    try:
        label = ChargeStatus(status).label
    except ValueError:
        label = status
    return format_html('<span class="badge badge-{}">{}</span>', str(status).lower().replace("_", "-"), label)


@register.simple_tag
def dispute_badge(status: str | None) -> str:
    """A charge's dispute (COR-2), beside its status badge: "Disputed: needs response", "Dispute lost"…"""
    if not status:
        return ""
    words: dict[str, str] = {
        DisputeStatus.NEEDS_RESPONSE: "Disputed: needs response",
        DisputeStatus.UNDER_REVIEW: "Disputed: under review",
        DisputeStatus.WON: "Dispute won",
        DisputeStatus.LOST: "Dispute lost",
    }
    css = "badge badge-dispute" + (" badge-dispute-won" if status == DisputeStatus.WON else "")
    return format_html('<span class="{}" data-dispute="{}">{}</span>', css, status, words.get(status, status))


@register.filter
def month_label(day: date) -> str:
    return day.strftime("%B %Y") if day else ""


@register.filter
def month_param(day: date) -> str:
    return day.strftime("%Y-%m") if day else ""


@register.inclusion_tag("ui/field.html")
def field(bound_field, hint: str = "", prefix: str = "", suffix: str = ""):
    """A labelled input with its help text and its errors right next to it (aria-describedby)."""
    described = []
    hint = hint or bound_field.help_text
    if hint:
        described.append(f"{bound_field.auto_id}_hint")
    if bound_field.errors:
        described.append(f"{bound_field.auto_id}_error")
    attrs = {"aria-describedby": " ".join(described)} if described else {}
    if bound_field.errors:
        attrs["aria-invalid"] = "true"
    return {
        "f": bound_field,
        "hint": hint,
        "prefix": prefix,
        "suffix": suffix,
        "widget": bound_field.as_widget(attrs=attrs),
        "is_check": bound_field.widget_type in {"checkbox"},
        "is_multi": bound_field.widget_type in {"checkboxselectmultiple"},
    }


@register.filter
def rate(rate_percent: Decimal) -> str:
    """An exact rate → "8.875 %" (MON-2)."""
    return f"{format_rate(rate_percent)} %"


@register.filter
def unit_price(unit_price_decimal: Decimal, currency: str) -> str:
    """A unit price in minor units (up to 12 decimals) in major units with the decimals it needs: 0.000875."""
    return format_unit_price(unit_price_decimal, currency)


@register.filter
def last_day(period_end: date) -> date:
    """A period's end is exclusive (the next cycle's first day); people read the last day it covers."""
    return period_end - timedelta(days=1)


@register.filter
def decline_words(code: str) -> str:
    return decline_reason(code)


@register.filter
def get_item(mapping: dict, key):
    return mapping.get(key, key)


@register.filter
def abs_minor(value) -> int:
    return abs(int(value))
