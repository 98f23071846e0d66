"""Pure helpers of the pages: chart geometry, invoice status from charges, lines by category, money text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing.overview import MonthTotals, invoice_status, is_settled, lines_by_category
from billing.statuses import ChargeStatus as S
from web.charts import _nice_ceiling, build_chart
from web.templatetags.ui import money, rate


def test_invoice_status_reads_the_most_urgent_charge_status():
    assert invoice_status([S.PAID, S.RETRYING]) == S.RETRYING
    assert invoice_status([S.PAID, S.SCHEDULED]) == S.SCHEDULED  # a later installment still to collect
    assert invoice_status([S.PAID_OUT, S.PAID]) == S.PAID
    assert invoice_status([]) == S.SCHEDULED


def test_settled_means_every_charge_is_paid_paid_out_or_agency_invoiced():
    assert is_settled([S.PAID, S.PAID_OUT]) and is_settled([S.AGENCY_INVOICED])
    assert not is_settled([S.PAID, S.SCHEDULED]) and not is_settled([])


@dataclass
class Line:
    category: str
    amount_minor: int


def test_lines_grouped_in_the_agency_category_order_with_taxes_apart():
    lines = [Line("LICENSE", 100), Line("AGENCY_SERVICES", 50), Line("TAXES_FEES", 12), Line("LICENSE", 5)]
    groups, taxes = lines_by_category(lines, ["AGENCY_SERVICES", "LICENSE", "TAXES_FEES", "OTHER"])
    assert [(g.category, g.total_minor, len(g.lines)) for g in groups] == [
        ("AGENCY_SERVICES", 50, 1),
        ("LICENSE", 105, 2),
    ]
    assert [t.amount_minor for t in taxes] == [12]


def test_chart_scale_is_round_and_bars_are_proportional():
    assert [_nice_ceiling(v) for v in (0, 7, 10, 11, 199, 2_200_000)] == [1, 10, 10, 20, 200, 2_500_000]
    months = [MonthTotals(date(2027, m, 1), 10_000 * m, 5_000 * m, 5_000 * m) for m in range(1, 13)]
    chart = build_chart(months, "USD")
    assert len(chart.bars) == 36 and [label for _, label, _ in chart.months][:2] == ["Jan", "Feb"]
    assert [year for _, _, year in chart.months] == ["2027"] + [""] * 11
    billed = [b for b in chart.bars if b.series == "billed"]
    assert billed[-1].height == 2 * billed[5].height  # 120,000 vs 60,000
    assert billed[-1].label == "December 2027 billed: 1,200.00 USD"
    assert chart.gridlines[0][1] == "0.00" and chart.gridlines[-1][1] == "2,000.00"


def test_money_and_rate_text():
    assert money(123456, "USD") == "1,234.56" and money(1500, "JPY") == "1,500" and money(None) == "—"
    assert rate(Decimal("8.25")) == "8.25 %" and rate(Decimal("5")) == "5 %"
    assert rate(Decimal("8.8750")) == "8.875 %" and rate(Decimal("4.7125")) == "4.7125 %"  # MON-2: exact, no padding
