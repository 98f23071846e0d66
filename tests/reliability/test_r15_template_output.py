"""R15 — a notice template prints plain data only: text, numbers, amounts, dates (SPEC §8; the attack review's F12).

`{{ client_name.format_map }}` printed `<function str.format_map at 0x7f…>`: Jinja's sandbox hands out `str.format`
and `format_map` before it asks whether an attribute is safe, and any object printed shows its repr. Now nothing but
a dict of documented data has attributes in a template, `name['attr']` is the same refusal, and every printed value
must be plain data (`notifications.rendering.PRINTABLE`). A refused template is refused on save with a message next
to the field; a stored one that fails at send time falls back to the default template.

Hypothesis builds expressions from every documented variable of every notice kind, every attribute name Python's
str, int, list and dict have, subscripts and filters, and checks each is either refused or renders with no repr of
any object (no `<… at 0x…>`, no `<function`, no `<built-in`, no `<class`).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Role
from notifications.catalog import CATALOG, NoticeKind
from notifications.models import NoticeTemplate
from notifications.rendering import TemplateInvalid, render, sample_context, template_validate
from notifications.services import notice_template_save
from tests.conftest import make_user
from tests.reliability.harness import record_figures, size

pytestmark = pytest.mark.django_db
FIGURES: Counter = Counter()
REPR = re.compile(r" at 0x[0-9a-f]+|<function |<built-in |<class '|<bound method |<method '|<module ", re.IGNORECASE)
ATTRIBUTES = sorted({*dir(""), *dir(0), *dir([]), *dir({}), "format_map", "format", "mro", "gi_frame"})


def test_R15_a_method_s_repr_is_never_printed(agency_a):
    """Regression: `{{ client_name.format_map }}` and its cousins are refused on save, nothing stored."""
    admin = make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    with schema_context(agency_a.schema_name):
        for body in [
            "{{ client_name.format_map }}",
            "{{ client_name.format }}",
            "{{ client_name['format_map'] }}",
            "{{ amount.zfill }}",
            "{{ [client_name] }}",
            "{{ {'a': client_name} }}",
        ]:
            with pytest.raises(TemplateInvalid) as refused:
                notice_template_save(kind=NoticeKind.PAYMENT_RECEIVED, subject="Thanks", body=body, actor=admin)
            assert refused.value.fields["body"], body
        assert not NoticeTemplate.objects.exists()
        # Plain data still prints: text, numbers, subscripts of text, filters.
        notice_template_save(
            kind=NoticeKind.PAYMENT_RECEIVED,
            subject="Thanks {{ client_name|upper }}",
            body="{{ client_name[0] }} {{ amount }} {{ client_name|length }} {{ 2 * 3 }}",
            actor=admin,
        )


def _expression(kind: str):
    variables = sorted(CATALOG[kind].variables)
    step = st.one_of(
        st.sampled_from(ATTRIBUTES).map(lambda a: f".{a}"),
        st.sampled_from(ATTRIBUTES).map(lambda a: f"['{a}']"),
        st.sampled_from(["[0]", "[1:3]", "[-1]", "|upper", "|length", "|first", "|join(',')", "()"]),
    )
    return st.tuples(st.sampled_from(variables), st.lists(step, max_size=3)).map(lambda t: t[0] + "".join(t[1]))


def test_R15_fuzz_every_variable_and_attribute_prints_plain_data_or_is_refused():
    @hypothesis_settings(
        max_examples=size(ci=400, full=10000), deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(kind=st.sampled_from(list(NoticeKind)), data=st.data())
    @example(kind=NoticeKind.PAYMENT_RECEIVED, data=None)
    def check(kind, data):
        expression = "client_name.format_map" if data is None else data.draw(_expression(kind))
        source = "{{ " + expression + " }}"
        FIGURES["expressions"] += 1
        try:
            template_validate(kind=kind, subject="s", body=source)
        except TemplateInvalid:
            FIGURES["refused"] += 1
            return
        rendered = render(kind=kind, subject="s", body=source, context=sample_context(CATALOG[kind].variables))
        FIGURES["printed"] += 1
        assert not REPR.search(rendered.body), (source, rendered.body)

    check()
    record_figures(
        "R15",
        {
            "expressions": FIGURES["expressions"],
            "refused": FIGURES["refused"],
            "printed_plain_data": FIGURES["printed"],
            "object_reprs_printed": 0,
        },
    )
