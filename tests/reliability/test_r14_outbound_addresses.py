"""R14 — outbound webhooks go only to public addresses, judged by `ipaddress` after resolving (the attack review's
F11).

The check used `is_global`, which Python's table answers True for IPv6 forms that carry an IPv4 address — NAT64
`64:ff9b::7f00:1` (127.0.0.1 behind a NAT64 gateway), 6to4 `2002:7f00:1::`, IPv4-compatible `::127.0.0.1` — and for
multicast and recent special-purpose blocks (`3fff::/20`, `5f00::/16`); port 0 passed too. Now the embedded IPv4
address of every such form must be public itself, multicast and the special blocks are refused, and port 0 is.

Each of the review's 38 URLs is posted through the API under production rules (`WEBHOOK_ALLOW_PRIVATE_HOSTS=False`):
refused ones answer 400 next to `url` and store nothing. Hypothesis then embeds random IPv4 addresses in every IPv6
form and checks the verdict on the form is never kinder than on the address it carries.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from django_tenants.utils import schema_context
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Role
from integrations.models import WebhookEndpoint
from integrations.services import address_public
from tests.api.conftest import api, token_for
from tests.reliability.harness import record_figures, size

FIGURES: Counter = Counter()

REFUSED = [
    # Accepted before (the review's list).
    "https://[64:ff9b::7f00:1]/",
    "https://[2002:7f00:1::]/",
    "https://[::127.0.0.1]/",
    "https://224.0.0.1/",
    "https://1.1.1.1:0/",
    "https://[3fff::1]/",
    "https://[5f00::1]/",
    # Their cousins.
    "https://[64:ff9b::a00:1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[64:ff9b:1::a00:1]/",
    "https://[2002:a00:1::]/",
    "https://[::a00:1]/",
    "https://[ff02::1]/",
    "https://239.255.255.250/",
    "https://255.255.255.255/",
    # Refused before too.
    "https://127.0.0.1/",
    "https://[::1]/",
    "https://0.0.0.0/",
    "https://localhost/",
    "https://[::ffff:127.0.0.1]/",
    "https://169.254.169.254/",
    "https://10.0.0.1/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://127.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://017700000001/",
    "https://localhost./",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://[2001:db8::1]/",
    "https://192.0.2.1/",
    "https://198.18.0.1/",
    "https://240.0.0.1/",
]
ACCEPTED = ["https://1.1.1.1/hook", "https://[2606:4700:4700::1111]/hook", "https://[64:ff9b::101:101]/hook"]


@pytest.mark.django_db
def test_R14_the_review_s_urls_under_production_rules(agency_a, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    http = api(agency_a, token_for(agency_a, "hooks@alpha.test", Role.ADMINISTRATOR))
    for url in REFUSED:
        response = http.post("/api/v1/webhook-endpoints/", {"url": url}, format="json")
        FIGURES["urls"] += 1
        assert response.status_code == 400 and "url" in response.json()["fields"], url
        FIGURES["refused"] += 1
    with schema_context(agency_a.schema_name):
        assert not WebhookEndpoint.objects.exists()
    for url in ACCEPTED:
        response = http.post("/api/v1/webhook-endpoints/", {"url": url}, format="json")
        FIGURES["urls"] += 1
        assert response.status_code == 201, (url, response.content)


ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


def _forms(v4: ipaddress.IPv4Address) -> list[str]:
    n = int(v4)
    return [
        str(ipaddress.IPv6Address((0x0064FF9B << 96) | n)),  # NAT64
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80))),  # 6to4
        str(ipaddress.IPv6Address(n)),  # IPv4-compatible
        str(ipaddress.IPv6Address((0xFFFF << 32) | n)),  # IPv4-mapped
    ]


def test_R14_fuzz_an_embedded_ipv4_address_is_judged_as_itself():
    @hypothesis_settings(max_examples=size(ci=2000, full=50000), deadline=None)
    @given(v4=ipv4)
    def check(v4):
        FIGURES["embedded"] += 1
        for form in _forms(v4):
            if address_public(form):
                assert address_public(str(v4)), (form, str(v4))

    @hypothesis_settings(max_examples=size(ci=2000, full=50000), deadline=None)
    @given(v6=st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address))
    def any_v6(v6):
        FIGURES["ipv6"] += 1
        if address_public(str(v6)):
            assert v6.is_global and not v6.is_multicast

    check()
    any_v6()
    record_figures(
        "R14",
        {
            "review_urls": FIGURES["urls"],
            "refused_400": FIGURES["refused"],
            "embedded_ipv4_tried": FIGURES["embedded"],
            "ipv6_tried": FIGURES["ipv6"],
            "endpoints_stored_for_refused_urls": 0,
            "responses_5xx": 0,
        },
    )
