"""R10 — one identifier, one account, one counter (ROLE-1, R7's sign-in throttling).

The attack review signed in as `ｍarketing@demo.test` (a full-width m) while `marketing@demo.test` was locked out:
Django's sign-in folds Unicode compatibility forms (NFKC) before it looks the user up, but the throttle counted the
lower-cased text, so every look-alike spelling had a fresh allowance. Now every comparison of an email — sign-in,
the throttle, uniqueness of users, password reset, invitations, token owners — uses one form
(`core.identifiers.identifier_key`: NFKC, case-folded). Hypothesis spells the address every way Unicode allows and
checks that a spelling which reaches the account always counts against the account's one counter.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest
from django.conf import settings
from django.test import Client as HttpClient
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.login import _user_key
from accounts.models import Role, User
from accounts.services import user_invite
from core.errors import ApplicationError
from core.identifiers import identifier_key
from tests.conftest import make_user
from tests.reliability.harness import record_figures, size

PW = "pw-correct-horse-9"
EMAIL = "marketing@alpha.test"
FIGURES: Counter = Counter()

# Characters that NFKC folds to each ASCII letter or digit: full-width, mathematical alphabets, circled, etc.
LOOKALIKES: dict[str, list[str]] = {}
for code in range(0x80, 0x1FBFF):
    folded = unicodedata.normalize("NFKC", chr(code))
    if len(folded) == 1 and folded.isascii() and (folded.isalnum() or folded in "@.-_"):
        LOOKALIKES.setdefault(folded.lower(), []).append(chr(code))


def spellings(address: str):
    """Every character of the address as itself, in upper case, or one of its Unicode look-alikes; with spaces."""
    per_char = [
        st.sampled_from(sorted({ch, ch.upper(), *LOOKALIKES.get(ch, [])})) if ch.strip() else st.just(ch)
        for ch in address
    ]
    return st.tuples(st.sampled_from(["", " ", "\t"]), st.tuples(*per_char), st.sampled_from(["", " "])).map(
        lambda parts: parts[0] + "".join(parts[1]) + parts[2]
    )


def _attempt(email: str, password: str, address: str = "10.0.0.1"):
    return HttpClient(HTTP_HOST="alpha.localhost").post(
        "/login/", {"username": email, "password": password}, REMOTE_ADDR=address
    )


@pytest.mark.django_db
def test_R10_R7_look_alike_spellings_share_the_account_s_one_counter(agency_a):
    """Regression (attack review F6): 5 failures lock the account for every spelling, the full-width one included;
    and 5 failures spread over 5 spellings lock it too."""
    make_user(agency_a, EMAIL, Role.MARKETING_MANAGER)
    limit = settings.LOGIN_FAILURES_PER_USER
    for n in range(limit):
        assert _attempt(EMAIL, "wrong", f"10.0.{n}.1").status_code == 200
    for spelling in [
        "ｍarketing@alpha.test",
        "𝐦𝐚𝐫𝐤𝐞𝐭𝐢𝐧𝐠@alpha.test",
        "MARKETING@ALPHA.TEST",
        " marketing@alpha.tｅst ",
    ]:
        refused = _attempt(spelling, PW, "10.9.9.9")
        assert refused.status_code == 429, spelling
        assert "_auth_user_id" not in refused.wsgi_request.session


@pytest.mark.django_db
def test_R10_R7_failures_through_different_spellings_add_up(agency_a):
    make_user(agency_a, "admin@alpha.test", Role.ADMINISTRATOR)
    guesses = ["ａdmin@alpha.test", "aｄmin@alpha.test", "adｍin@alpha.test", "𝐚dmin@alpha.test", "admin@alpha.tｅst"]
    for n, spelling in enumerate(guesses):
        assert _attempt(spelling, "wrong", f"10.1.{n}.1").status_code == 200
    assert _attempt("admin@alpha.test", PW, "10.1.9.9").status_code == 429


@pytest.mark.django_db
def test_R10_a_look_alike_spelling_is_the_same_account_for_sign_in_uniqueness_and_reset(agency_a):
    user = make_user(agency_a, EMAIL, Role.MARKETING_MANAGER)
    assert _attempt("ＭＡＲＫＥＴＩＮＧ@alpha.test", PW).status_code == 302  # the same account, signed in
    with schema_context(agency_a.schema_name):
        admin = User.objects.create_user("boss@alpha.test", PW, role=Role.ADMINISTRATOR)
        with pytest.raises(ApplicationError) as refused:
            user_invite(email="ｍarketing@alpha.test", role=Role.SALESPERSON, actor=admin)
        assert refused.value.fields == {"email": ["A user with this email already exists."]}
        assert User.objects.filter(email_key=identifier_key(EMAIL)).get() == user
        created = User.objects.create_user("Ｎew@alpha.test", None, role=Role.SALESPERSON)
        assert created.email == "new@alpha.test"  # stored in the form shown: NFKC, lower case


@pytest.mark.django_db
def test_R10_fuzz_every_spelling_that_reaches_the_account_counts_against_it(agency_a):
    """Hypothesis: any spelling of the address (case, Unicode look-alikes, white space) that sign-in resolves to the
    account has the account's throttle key; any that does not resolve to it has another."""
    user = make_user(agency_a, EMAIL, Role.MARKETING_MANAGER)
    account_key = _user_key(EMAIL)

    @hypothesis_settings(
        max_examples=size(ci=300, full=5000), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(spelling=st.one_of(spellings(EMAIL), st.text(max_size=40)))
    def check(spelling):
        FIGURES["spellings"] += 1
        with schema_context(agency_a.schema_name):
            try:
                found = User.objects.get_by_natural_key(unicodedata.normalize("NFKC", spelling))
            except User.DoesNotExist:
                found = None
        if found == user:
            FIGURES["reaching_the_account"] += 1
            assert _user_key(spelling) == account_key, repr(spelling)
        else:
            assert _user_key(spelling) != account_key, repr(spelling)

    check()
    assert FIGURES["reaching_the_account"] > FIGURES["spellings"] // 4
    record_figures(
        "R10",
        {
            "spellings_tried": FIGURES["spellings"],
            "reaching_the_account": FIGURES["reaching_the_account"],
            "with_another_counter": 0,
            "lookalike_characters": sum(len(v) for v in LOOKALIKES.values()),
            "responses_5xx": 0,
        },
    )
