"""The branded HTML layout every notice is sent in, beside its plain text (multipart/alternative).

The agency edits the plain text (subject and body); the layout is the product's: the agency's name, colour and
logo around the body's paragraphs, with its links made clickable. It is rendered by Jinja2's sandbox — the
same kind of environment as the notice templates, with autoescaping on — from plain values only, so whatever
the body holds arrives as text, never as markup. The logo is the agency's public logo address on its own host
(`/branding/logo`, built from SITE_URL), as mail clients expect images to be linked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from core.links import absolute_url
from notifications.mime import header_value

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_URL = re.compile(r"https?://[^\s<>\"']+")

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title></head>
<body style="margin:0;padding:0;background:#f5f7fb;font-family:Helvetica,Arial,sans-serif;color:#1d2433;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f5f7fb;">
<tr><td align="center" style="padding:24px 12px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"
 style="max-width:600px;background:#ffffff;border:1px solid #e3e7ee;border-radius:10px;
 border-top:4px solid {{ colour }};">
<tr><td style="padding:20px 24px 8px 24px;font-size:18px;font-weight:bold;">
{% if logo_url %}<img src="{{ logo_url }}" alt="{{ agency_name }}" height="36"
 style="height:36px;display:block;margin-bottom:8px;">{% endif %}
{{ agency_name }}</td></tr>
<tr><td style="padding:8px 24px 24px 24px;font-size:15px;line-height:1.5;">
{% for paragraph in paragraphs %}<p style="margin:0 0 14px 0;">{{ paragraph }}</p>{% endfor %}
</td></tr>
{% if footer %}<tr><td style="padding:12px 24px;border-top:1px solid #e3e7ee;font-size:12px;color:#556070;">
{{ footer }}</td></tr>{% endif %}
</table></td></tr></table></body></html>
"""


@dataclass(frozen=True)
class Branding:
    name: str
    colour: str = "#2f5bd3"
    logo_url: str = ""
    footer: str = ""

    @classmethod
    def of(cls, agency) -> Branding:
        """The branding of an agency-like object (name, brand_color, logo, address), read by attribute so this
        module needs nothing from the tenants app."""
        if agency is None:
            return cls(name="")
        colour = getattr(agency, "brand_color", "") or ""
        logo_url = ""
        name = getattr(getattr(agency, "logo", None), "name", "") or ""
        if name.rsplit(".", 1)[-1].lower() in ("png", "jpg", "jpeg") and getattr(agency, "schema_name", ""):
            # PNG and JPEG only: mail clients rarely show SVG.
            logo_url = absolute_url("/branding/logo", agency=agency.schema_name)
        address = str(getattr(agency, "address", "") or "").replace("\n", ", ")
        return cls(
            name=str(getattr(agency, "name", "") or ""),
            colour=colour if _COLOUR.fullmatch(colour) else "#2f5bd3",
            logo_url=logo_url,
            footer=" · ".join(part for part in (address, str(getattr(agency, "email", "") or "")) if part),
        )


@lru_cache(maxsize=1)
def _template():
    env = ImmutableSandboxedEnvironment(autoescape=True)
    env.globals.clear()
    return env.from_string(LAYOUT)


def _paragraph(text: str) -> Markup:
    """A paragraph of the plain body: escaped, its links clickable, its single line breaks kept."""
    parts, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        end = match.start() + len(url)
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup('<a href="{0}" style="color:#2f5bd3;">{0}</a>').format(url))
        last = end
    parts.append(escape(text[last:]))
    return Markup("<br>").join(Markup("").join(parts).split("\n"))


def render_html(*, subject: str, body: str, branding: Branding) -> str:
    paragraphs = [_paragraph(block.strip("\n")) for block in re.split(r"\n\s*\n", body.strip()) if block.strip()]
    return _template().render(
        subject=subject,
        agency_name=branding.name,
        colour=branding.colour,
        logo_url=branding.logo_url,
        paragraphs=paragraphs,
        footer=branding.footer,
    )


def branded_message(*, subject: str, body: str, from_email, to: list[str], branding: Branding, **kwargs):
    """The notice as sent: the plain text and the branded HTML beside it (multipart/alternative)."""
    from django.core.mail import EmailMultiAlternatives

    subject = header_value(subject)
    if "headers" in kwargs:
        kwargs["headers"] = {name: header_value(value) for name, value in kwargs["headers"].items()}
    message = EmailMultiAlternatives(subject, body, header_value(from_email), [header_value(a) for a in to], **kwargs)
    message.attach_alternative(render_html(subject=subject, body=body, branding=branding), "text/html")
    return message
