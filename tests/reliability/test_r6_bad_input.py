"""R6 — bad input on the pages: Hypothesis over every web form (Client Configuration with its Agency Services
lines, Billing Setup, Email Template editing and its live preview, users, API tokens, the portal's payment
method, billing support's Agency Invoiced), posted through Django's test client by a signed-in user on a real
agency. No answer is a 5xx; a refused post names a field and changes no row of any table (digests of every row,
so an UPDATE shows too). Oversized bodies answer 4xx and store nothing. SSTI payloads on template save and
preview are refused or render harmlessly, and no secret reaches any output.

The API has its own generated bad input (tests/api/test_bad_input.py, 605 requests, and the schemathesis run
in tests/api/test_fuzz_schema.py); the sandbox's service-level refusals are in
tests/integration/test_notice_template_editing.py. This file covers the HTML forms and the render bounds.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Role
from billing.notice_previews import notice_preview_context
from clients.models import ClientUser
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import Notice, NoticeTemplate
from notifications.rendering import MAX_OUTPUT_CHARS
from notifications.services import notice_enqueue
from tests.api.bodies import table_digests
from tests.conftest import login_client, make_user
from tests.reliability.harness import record_figures, size
from tests.ui_helpers import billed_agency

pytestmark = pytest.mark.django_db

SCHEMAS = ("public", "alpha")
EXAMPLES = size(ci=40, full=400)
FIGURES: Counter = Counter()

# Values that broke amount parsing, the database or the sandbox somewhere once, plus the classics.
NASTY = [
    "",
    " ",
    "0",
    "-0",
    "-1",
    "1e400",
    "-1e400",
    "9" * 5000,
    "1e999999999",
    "1e-999999999",
    "99999999999999999999",
    "90071992547409.92",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "0x10",
    "1,2,3",
    "12.345",
    "１２",
    "١٢٣",
    "nul\x00byte",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "'; DROP TABLE clients_client; --",
    "é" * 300,
    "a" * 20_001,
    "29",
    "0, 29",
    "5;;28",
    "-5",
    "1" * 30,
    "2147483648",
    "9223372036854775808",
    "None",
    "[]",
    "²",
    "①",
    "5, ²",  # str.isdigit() says yes, int() says no
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)  # the client encodes UTF-8
JUNK = st.one_of(TEXT, st.sampled_from(NASTY), st.integers(min_value=-(2**70), max_value=2**70).map(str))

HYPOTHESIS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELD_ERROR = re.compile(r'class="(?:field-error|errorlist)')


@pytest.fixture(scope="module", autouse=True)
def _aggregate_figures() -> Iterator[None]:
    yield
    record_figures(
        "r6_bad_input",
        {
            "inputs_tried": FIGURES["inputs"],
            "responses_5xx": FIGURES["5xx"],
            "refused_4xx": FIGURES["4xx"],
            "accepted": FIGURES["accepted"],
            "rows_changed_by_refused_input": FIGURES["changed"],
            "forms": FIGURES["forms"],
            "oversized_bodies": FIGURES["oversized"],
            "ssti_payloads": FIGURES["ssti"],
            "examples_per_form": EXAMPLES,
        },
    )


@pytest.fixture
def scenario(agency_a):
    return billed_agency(agency_a)


def _post(http: HttpClient, path: str, data, **extra):
    """One bad post: never a 5xx; refused (4xx) means a field error on the page and no row changed."""
    before = table_digests(*SCHEMAS)
    response = http.post(path, data, **extra)
    FIGURES["inputs"] += 1
    if response.status_code >= 500:
        FIGURES["5xx"] += 1
    assert response.status_code < 500, (path, data)
    if response.status_code >= 400:
        FIGURES["4xx"] += 1
        after = table_digests(*SCHEMAS)
        if after != before:
            FIGURES["changed"] += 1
        assert after == before, (path, data, {k for k in before if before[k] != after.get(k)})
        if "text/html" in response.headers.get("Content-Type", ""):
            assert FIELD_ERROR.search(response.content.decode()), (path, data, response.content[:500])
    else:
        FIGURES["accepted"] += 1
    return response


# --- Client Configuration: price, taxes, billing day, autopay days, salesperson; Agency Services lines -----


def test_R6_PLAN_2_client_configuration_bad_input_is_a_field_error_and_changes_nothing(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    path = f"/clients/{scenario.declining.public_id}/"
    with schema_context("alpha"):
        tax_id = str(scenario.paying.taxes.first().pk)
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(
        price=JUNK,
        taxes=st.lists(st.one_of(JUNK, st.just(tax_id)), max_size=3),
        day=JUNK,
        autopay=JUNK,
        salesperson=JUNK,
    )
    @example(price="1", taxes=[], day="", autopay="9" * 5000, salesperson="")  # over int()'s 4,300 digits
    @example(price="1", taxes=[], day="²", autopay="5, ²", salesperson="²")
    def post(price, taxes, day, autopay, salesperson):
        _post(
            http,
            path,
            {
                "license_price": price,
                "taxes": taxes,
                "billing_day": day,
                "autopay_days": autopay,
                "salesperson": salesperson,
            },
        )

    post()


def test_R6_PLAN_2_agency_services_line_bad_input(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    path = f"/clients/{scenario.declining.public_id}/services/"
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(description=JUNK, amount=JUNK, one_time=JUNK, htmx=st.booleans())
    def post(description, amount, one_time, htmx):
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        _post(http, path, {"description": description, "amount": amount, "one_time": one_time}, **headers)

    post()


@pytest.mark.parametrize("amount", ["1e400", "9" * 5000, "1e999999999", "99999999999999999999", "1e-999999999"])
def test_R6_MON_1_huge_or_tiny_amounts_are_field_errors_not_overflows(scenario, amount):
    """Found by this file: these were a 500 (bigint overflow, ValueError, decimal.Overflow) or, for the tiny
    one, silently zero. Now bounded before scaling (core.money.MAX_AMOUNT_MINOR)."""
    http = login_client(scenario.agency, scenario.admin.email)
    response = _post(http, f"/clients/{scenario.declining.public_id}/", {"license_price": amount})
    assert response.status_code == 400
    assert re.search(r"at most (999,999,999\.99|2 decimal places)|amount such as 199\.00", response.content.decode())


# --- Billing Setup ------------------------------------------------------------------------------------------


def _setup_body(**changes) -> dict:
    body = {
        "billing_day": "1",
        "time_zone": "America/New_York",
        "grace_period_days": "5",
        "overdue_threshold": "10.00",
        "statement_days_before": "10",
        "statement_second_after_days": "",
        "statement_third_after_days": "",
        "overdue_second_after_days": "",
        "overdue_third_after_days": "",
        "retries_enabled": "on",
        "brand_color": "#1f6feb",
        "address": "1 Main St",
        "email": "billing@alpha.test",
        **{
            f"category_{i}": c
            for i, c in enumerate(["LICENSE", "AGENCY_SERVICES", "PRODUCTS", "OVERAGE", "TAXES_FEES", "OTHER"], start=1)
        },
    }
    body.update(changes)
    return body


SETUP_FIELDS = [name for name in _setup_body() if name != "retries_enabled"]


def test_R6_billing_setup_bad_input_is_a_field_error_and_changes_nothing(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(changes=st.dictionaries(st.sampled_from(SETUP_FIELDS), JUNK, min_size=1, max_size=4))
    def post(changes):
        _post(http, "/setup/", _setup_body(**changes))

    post()


SVG = "<svg xmlns='http://www.w3.org/2000/svg' xmlns:xlink='http://www.w3.org/1999/xlink'>{}</svg>"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("logo.png", b"<html><script>alert(1)</script></html>"),
        ("logo.jpg", b"GIF89a"),
        ("logo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * (1024 * 1024 + 1)),
        ("../../etc/passwd", b"root:x:0:0"),
        ("logo.svg", SVG.format("<script>alert(1)</script>").encode()),
        ("logo.svg", SVG.format("<rect width='9' height='9' onload='alert(1)'/>").encode()),
        ("logo.svg", SVG.format("<image xlink:href='file:///etc/passwd' width='9' height='9'/>").encode()),
        ("logo.svg", SVG.format("<image href='http://169.254.169.254/latest/meta-data/'/>").encode()),
        ("logo.svg", SVG.format("<rect style='fill: url(https://evil.example/x)'/>").encode()),
        ("logo.svg", SVG.format("<style>@import 'https://evil.example/x.css';</style>").encode()),
        (
            "logo.svg",
            SVG.format("<foreignObject><body xmlns='http://www.w3.org/1999/xhtml'>x</body></foreignObject>").encode(),
        ),
        (
            "logo.svg",
            b"<?xml version='1.0'?><!DOCTYPE svg [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]>"
            b"<svg xmlns='http://www.w3.org/2000/svg'><text>&b;</text></svg>",
        ),
        ("logo.svg", SVG.format("<style>@font-face{font-family:x;src:\\75rl(file:///dev/zero)}</style>").encode()),
        ("logo.svg", SVG.format("<style>@\\69mport 'file:///etc/passwd';</style>").encode()),
        ("logo.svg", SVG.format("<rect style='fill:\\75rl(http://169.254.169.254/)'/>").encode()),
        ("logo.svg", b"<html>not svg</html>"),
        ("logo.svg", b"<svg"),
    ],
)
def test_R6_billing_setup_bad_logo_uploads_are_refused(scenario, name, content):
    """Found by this file: the logo's content was never checked, so any file named .png, or an SVG with script
    or outside references (pages, and the PDF renderer that embeds it), was stored and served."""
    http = login_client(scenario.agency, scenario.admin.email)
    response = _post(http, "/setup/", {**_setup_body(), "logo": SimpleUploadedFile(name, content)})
    assert response.status_code == 400
    assert re.search(r'id="id_logo_error"', response.content.decode())


def test_R6_an_svg_logo_is_refused_and_a_png_is_stored_re_encoded_and_served_sandboxed(scenario):
    """SVG logos are refused, however plain (docs/decisions.md, "Logos are raster images"): the attack review got
    `\\75rl(` and `@\\69mport` past the old SVG check. A PNG is stored as the product re-encoded it."""
    import io

    from PIL import Image

    http = login_client(scenario.agency, scenario.admin.email)
    svg = SVG.format("<rect width='9' height='9' fill='#123456'/>").encode()
    refused = _post(http, "/setup/", {**_setup_body(), "logo": SimpleUploadedFile("logo.svg", svg)})
    assert refused.status_code == 400 and "export it as a PNG" in refused.content.decode()
    upload = io.BytesIO()
    Image.new("RGB", (30, 10), (18, 52, 86)).save(upload, format="PNG")
    png = upload.getvalue() + b"<script>trailing bytes</script>"
    assert http.post("/setup/", {**_setup_body(), "logo": SimpleUploadedFile("logo.png", png)}).status_code == 302
    served = http.get("/branding/logo")
    assert served["Content-Type"] == "image/png" and b"script" not in served.content
    assert Image.open(io.BytesIO(served.content)).size == (30, 10)
    assert "sandbox" in served["Content-Security-Policy"] and "default-src 'none'" in served["Content-Security-Policy"]


# --- Email Templates: save and live preview ------------------------------------------------------------------

FRAGMENTS = [
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "{% for line in lines %}",
    "{% endfor %}",
    "{% if amount %}",
    "{% endif %}",
    "{{ client_name }}",
    "{{ amount|upper }}",
    "|replace('', 'xxxxxxxx')",
    " * 99999",
    " ** 999",
    "{#",
    "#}",
    "{% raw %}",
    "{% endraw %}",
    "__class__",
    "lines[0]",
    "~",
    "'",
    '"',
    "\n",
]
TEMPLATE_TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), TEXT), max_size=12).map("".join)


def test_R6_NOT_email_template_editing_bad_input_is_a_field_error_and_changes_nothing(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    FIGURES["forms"] += 2

    @HYPOTHESIS
    @given(
        kind=st.sampled_from(list(CATALOG)),
        subject=st.one_of(TEMPLATE_TEXT, JUNK),
        body=st.one_of(TEMPLATE_TEXT, JUNK),
        preview=st.booleans(),
    )
    def post(kind, subject, body, preview):
        started = time.monotonic()
        if preview:
            FIGURES["inputs"] += 1
            before = table_digests(*SCHEMAS)
            response = http.post(f"/email-templates/{kind}/preview", {"subject": subject, "body": body})
            assert response.status_code == 200 and table_digests(*SCHEMAS) == before
        else:
            response = _post(http, f"/email-templates/{kind}/", {"subject": subject, "body": body})
        assert time.monotonic() - started < 5, (subject, body)
        assert len(response.content) < 4 * MAX_OUTPUT_CHARS + 200_000

    post()


# --- users, API tokens, the portal's payment method, billing support's Agency Invoiced ----------------------


def test_R6_user_invitation_bad_input(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(email=JUNK, role=st.one_of(JUNK, st.sampled_from([r.value for r in Role])), first=JUNK, client=JUNK)
    def post(email, role, first, client):
        _post(http, "/users/", {"email": email, "role": role, "first_name": first, "client": client})

    post()


def test_R6_api_token_form_bad_input(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(name=st.one_of(JUNK, st.just("a" * 101)), owner=JUNK, action=st.sampled_from(["", "revoke"]), token=JUNK)
    def post(name, owner, action, token):
        data = {"name": name, "owner": owner, "action": action, "token": token}
        before = table_digests(*SCHEMAS)
        response = http.post("/settings/api-tokens/", data)
        FIGURES["inputs"] += 1
        assert response.status_code in (302, 400, 404), data
        if response.status_code != 302:
            FIGURES["4xx"] += 1
            assert table_digests(*SCHEMAS) == before, data
        else:
            FIGURES["accepted"] += 1

    post()


def test_R6_portal_payment_method_bad_input(scenario):
    user = make_user(scenario.agency, "owner@paying.example", Role.CLIENT)
    with schema_context("alpha"):
        ClientUser.objects.create(user=user, client=scenario.paying)
    http = login_client(scenario.agency, "owner@paying.example")
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(method=st.one_of(JUNK, st.sampled_from(["pm_card_visa:x", "sepa:XX00", "ach:1:2", "pm_" + "a" * 300])))
    def post(method):
        _post(http, "/portal/payment-method/", {"method": method})

    post()


def test_R6_COL_1_support_agency_invoiced_bad_input(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    http = login_client(None, "support@platform.test")
    path = f"/agencies/alpha/clients/{scenario.junior_client.public_id}/agency-invoiced"
    FIGURES["forms"] += 1

    @HYPOTHESIS
    @given(reason=st.one_of(JUNK, st.just("")), action=st.one_of(JUNK, st.just("clear")))
    def post(reason, action):
        _post(http, path, {"reason": reason, "action": action})

    post()


# --- query strings of the list pages ------------------------------------------------------------------------

AGENCY_QUERIES = {"/billing/": ("month", "status", "page"), "/clients/": ("q", "page"), "/portal/": ("month",)}
PLATFORM_QUERIES = {
    "/clients/": ("q",),
    "/invoices/": ("agency", "page"),
    "/audit/": ("agency", "action"),
    "/agencies/alpha/": ("month",),
}


def test_R6_query_strings_of_list_pages_never_answer_5xx(scenario):
    make_user(None, "support@platform.test", Role.BILLING_SUPPORT)
    agency_http, platform_http = (
        login_client(scenario.agency, scenario.admin.email),
        login_client(None, "support@platform.test"),
    )
    pages = [(agency_http, path, names) for path, names in AGENCY_QUERIES.items() if path != "/portal/"] + [
        (platform_http, path, names) for path, names in PLATFORM_QUERIES.items()
    ]
    FIGURES["forms"] += len(pages)

    @HYPOTHESIS
    @given(index=st.integers(min_value=0, max_value=len(pages) - 1), values=st.lists(JUNK, min_size=3, max_size=3))
    def get(index, values):
        http, path, names = pages[index]
        response = http.get(path, dict(zip(names, values, strict=False)))
        FIGURES["inputs"] += 1
        assert response.status_code in (200, 400, 404), (path, values, response.status_code)

    get()


# --- oversized bodies ---------------------------------------------------------------------------------------


def test_R6_oversized_bodies_are_4xx_and_store_nothing(scenario):
    http = login_client(scenario.agency, scenario.admin.email)
    over = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    cases = [
        ("/setup/", _setup_body(address="x" * over)),
        (f"/clients/{scenario.declining.public_id}/services/", {"description": "d" * over, "amount": "1"}),
        ("/email-templates/PAYMENT_FAILED/", {"subject": "s", "body": "{{ client_name }}" * (over // 10)}),
        ("/email-templates/PAYMENT_FAILED/preview", {"subject": "s", "body": "b" * over}),
        ("/users/", {f"f{i}": "x" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}),
        (
            "/setup/",
            {
                **_setup_body(),
                **{
                    f"logo{i}": SimpleUploadedFile(f"l{i}.png", b"x")
                    for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)
                },
            },
        ),
        ("/login/", {"username": "u" * over, "password": "p"}),
        # Large but under the limit: the field's own maximum refuses it.
        (f"/clients/{scenario.declining.public_id}/services/", {"description": "d" * 1_000_000, "amount": "1"}),
        ("/email-templates/PAYMENT_FAILED/", {"subject": "s" * 100_000, "body": "{{ client_name }}"}),
    ]
    for path, data in cases:
        before = table_digests(*SCHEMAS)
        response = http.post(path, data)
        FIGURES["inputs"] += 1
        FIGURES["oversized"] += 1
        assert response.status_code in (400, 413), (path, response.status_code)
        assert table_digests(*SCHEMAS) == before, path


# --- SSTI on template save and preview ----------------------------------------------------------------------

SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ settings.SECRET_KEY }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('cat /etc/passwd').read() }}",
    "{{ lipsum }}",
    "{{ range(10) }}",
    "{{ request }}",
    "{{ request.environ }}",
    "{{ request.META }}",
    "{{ view }}",
    "{{ csrf_token }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends '/etc/passwd' %}",
    "{% from 'x' import y %}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 9 ** 999999 }}",
    "{{ client_name|replace('', 'xxxxxxxxxx')|replace('', 'xxxxxxxxxx')|replace('', 'xxxxxxxxxx') }}",
    "{% set a = client_name ~ client_name %}{% set b = a ~ a %}{{ b }}",
    "{% for l in lines %}{% for c in l.description %}{% for d in l.description %}.{% endfor %}{% endfor %}{% endfor %}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{{ lines.__class__.__base__.__subclasses__() }}",
    "{{ client_name.__class__ }}",
    "{{ client_name.format(client_name) }}",
    "{{ '%s'|format(1) }}",
    "{{ client_name|attr('__class__') }}",
    "{{ lines|map(attribute='__class__')|list }}",
    "{% with x = 1 %}{{ x }}{% endwith %}",
    "{% filter upper %}{{ client_name }}{% endfilter %}",
    "{% debug %}",
    "{{ loop.cycle.__globals__ }}",
    "{{ [].pop() }}",
    "{{ {}.update(a=1) }}",
    "{% autoescape false %}{{ client_name }}{% endautoescape %}",
    "${7*7} #{7*7} <%= 7*7 %> {{7*'7'}}",
]


def _secrets() -> list[str]:
    found = [settings.SECRET_KEY]
    password = settings.DATABASES["default"].get("PASSWORD")
    if password:
        found.append(password)
    return found


def test_R6_SSTI_payloads_on_template_save_and_preview_are_refused_or_harmless(scenario):
    """Every payload is refused on save (400, nothing stored) or stored and rendered harmlessly; the preview
    never errors; no output holds SECRET_KEY, the database password, /etc/passwd or an object's repr."""
    http = login_client(scenario.agency, scenario.admin.email)
    secrets = _secrets()
    accepted = []
    with schema_context("alpha"):
        context = notice_preview_context(
            client=scenario.paying, kind=NoticeKind.UPCOMING_STATEMENT, today=date(2027, 2, 20)
        )
    for payload in SSTI:
        FIGURES["ssti"] += 1
        for field in ("subject", "body"):
            data = {"subject": "Hi", "body": "Hello", field: payload}
            started = time.monotonic()
            saved = _post(http, "/email-templates/UPCOMING_STATEMENT/", data)
            preview = http.post("/email-templates/UPCOMING_STATEMENT/preview", data)
            FIGURES["inputs"] += 1
            assert preview.status_code == 200
            assert time.monotonic() - started < 3, payload
            for response in (saved, preview):
                text = response.content.decode()
                assert not any(secret in text for secret in secrets), payload
                assert "root:x:0" not in text and "<class '" not in text and "&lt;class" not in text, payload
                assert "__globals__" not in text.replace(payload, "").replace(payload.replace("'", "&#x27;"), ""), (
                    payload
                )
            if saved.status_code == 302:
                accepted.append(payload)
                with schema_context("alpha"):
                    notice = notice_enqueue(
                        account=f"ssti-{len(accepted)}-{field}",
                        kind="UPCOMING_STATEMENT",
                        period="2027-03",
                        to_email="x@example.com",
                        context=context,
                        business_date=date(2027, 2, 20),
                    )
                    body = f"{notice.subject}\n{notice.body}"
                assert not any(secret in body for secret in secrets) and "<class" not in body, payload
    # What renders is plain text only: the raw-block and the other template languages' syntax.
    assert (
        set(accepted)
        <= {"{% raw %}", "${7*7} #{7*7} <%= 7*7 %> {{7*'7'}}", "{% filter upper %}{{ client_name }}{% endfilter %}"}
        or not accepted
    ), accepted
    with schema_context("alpha"):
        stored = list(NoticeTemplate.objects.values_list("subject", "body"))
    assert all("__" not in s + b for s, b in stored)


def test_R6_a_stored_template_that_would_exhaust_memory_falls_back_to_the_default(scenario):
    """A template stored before these bounds (or written straight to the database) cannot take the worker
    down at send time: the render stops at its bound and the default is sent."""
    with schema_context("alpha"):
        NoticeTemplate.objects.create(
            kind=NoticeKind.PAYMENT_FAILED,
            subject="x",
            body="{{ client_name|replace('', 'xxxxxxxxxx')|replace('', 'xxxxxxxxxx')"
            "|replace('', 'xxxxxxxxxx')|replace('', 'xxxxxxxxxx') }}",
        )
        context = notice_preview_context(
            client=scenario.declining, kind=NoticeKind.PAYMENT_FAILED, today=date(2027, 2, 20)
        )
        started = time.monotonic()
        notice = notice_enqueue(
            account="bomb",
            kind=NoticeKind.PAYMENT_FAILED,
            period="2027-02",
            to_email="x@example.com",
            context=context,
            business_date=date(2027, 2, 20),
        )
        assert time.monotonic() - started < 2
        assert notice.used_default and "longer than" in notice.template_error
        assert Notice.objects.get(pk=notice.pk).body == notice.body
