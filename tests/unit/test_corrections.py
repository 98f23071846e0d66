"""The credit-note arithmetic (COR-1): whole lines with their share of taxes, amounts in category order, caps."""

from __future__ import annotations

import pytest

from billing.corrections import (
    CreditableLine,
    CreditAboveRemaining,
    CreditNoteInvalid,
    credit_lines_for_amount,
    credit_lines_for_positions,
)
from core.categories import DEFAULT_CATEGORY_ORDER

# License 199.00 and services 250.00 (both taxable), usage 12.34 (not), one tax line: 8.25 % per line, half-up.
LINES = [
    CreditableLine(1, 1, "LICENSE", "License", 19_900, True, 19_900),
    CreditableLine(2, 2, "AGENCY_SERVICES", "Social media", 25_000, True, 25_000),
    CreditableLine(3, 3, "PRODUCTS", "Listings", 1_234, False, 1_234),
    CreditableLine(4, 4, "TAXES_FEES", "Sales tax (8.25 %)", 3_705, False, 3_705),
]


def _amounts(drafts):
    return [(d.position, d.amount_minor) for d in drafts]


def test_COR_1_a_whole_taxable_line_brings_its_share_of_the_tax_half_up():
    # 3,705 × 19,900 / 44,900 = 1,642.08… → 1,642
    assert _amounts(credit_lines_for_positions(LINES, [1])) == [(1, 19_900), (4, 1_642)]
    # 3,705 × 25,000 / 44,900 = 2,062.92… → 2,063
    assert _amounts(credit_lines_for_positions(LINES, [2])) == [(2, 25_000), (4, 2_063)]
    # an untaxed line brings no tax
    assert _amounts(credit_lines_for_positions(LINES, [3])) == [(3, 1_234)]


def test_COR_1_the_last_taxable_line_takes_what_is_left_of_the_tax():
    after_license = [
        CreditableLine(1, 1, "LICENSE", "License", 19_900, True, 0),
        LINES[1],
        LINES[2],
        CreditableLine(4, 4, "TAXES_FEES", "Sales tax (8.25 %)", 3_705, False, 3_705 - 1_642),
    ]
    # all taxable lines are now credited: exactly the tax billed, never a cent more or less in total
    assert _amounts(credit_lines_for_positions(after_license, [2])) == [(2, 25_000), (4, 2_063)]


def test_COR_1_a_tax_line_chosen_itself_is_credited_whole_and_not_twice():
    assert _amounts(credit_lines_for_positions(LINES, [1, 4])) == [(1, 19_900), (4, 3_705)]


def test_COR_1_an_amount_is_spread_in_the_category_order():
    assert _amounts(credit_lines_for_amount(LINES, 20_000, DEFAULT_CATEGORY_ORDER)) == [(1, 19_900), (2, 100)]
    taxes_first = ["TAXES_FEES", *[c for c in DEFAULT_CATEGORY_ORDER if c != "TAXES_FEES"]]
    assert _amounts(credit_lines_for_amount(LINES, 4_000, taxes_first)) == [(4, 3_705), (1, 295)]


def test_COR_1_more_than_remains_and_bad_choices_are_refused():
    with pytest.raises(CreditAboveRemaining) as above:
        credit_lines_for_amount(LINES, 49_840, DEFAULT_CATEGORY_ORDER)
    assert above.value.fields == {"amount_minor": ["More than remains to credit: at most 498.39 USD."]}
    for bad in (0, -5):
        with pytest.raises(CreditNoteInvalid):
            credit_lines_for_amount(LINES, bad, DEFAULT_CATEGORY_ORDER)
    credited = [CreditableLine(1, 1, "LICENSE", "License", 19_900, True, 0), *LINES[1:]]
    with pytest.raises(CreditAboveRemaining, match="already wholly credited"):
        credit_lines_for_positions(credited, [1])
    with pytest.raises(CreditAboveRemaining, match="no line 9"):
        credit_lines_for_positions(LINES, [9])
    with pytest.raises(CreditAboveRemaining, match="chosen twice"):
        credit_lines_for_positions(LINES, [2, 2])
