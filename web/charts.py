"""Geometry of the 12-month billed / collected / outstanding chart, drawn as inline SVG by the template.
Pure arithmetic on integers: no chart library, no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass

from billing.overview import MonthTotals
from core.money import format_minor

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 40
SERIES = (("billed", "Billed"), ("collected", "Collected"), ("outstanding", "Outstanding"))


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    series: str
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    months: list[tuple[int, str, str]]  # (x of the label's centre, "Jan", "2027" under the first and each January)
    gridlines: list[tuple[int, str]]  # (y, amount label)
    baseline: int
    rows: list[dict]  # the same numbers as a table, for screen readers and small screens


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 × 10^n that is at least `value`, so gridlines fall on round amounts."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for candidate in (magnitude, 2 * magnitude, 5 * magnitude // 2, 5 * magnitude, 10 * magnitude):
        if candidate >= value:
            return candidate
    return 10 * magnitude


def build_chart(months: list[MonthTotals], currency: str) -> Chart:
    top = _nice_ceiling(max([max(m.billed_minor, m.collected_minor, m.outstanding_minor) for m in months] or [0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w // max(len(months), 1)
    bar_w = max((slot - 6) // 3, 2)
    bars, labels, rows = [], [], []
    for index, month in enumerate(months):
        x0 = LEFT + index * slot + (slot - bar_w * 3) // 2
        values = {
            "billed": month.billed_minor,
            "collected": month.collected_minor,
            "outstanding": month.outstanding_minor,
        }
        for offset, (key, name) in enumerate(SERIES):
            height = values[key] * plot_h // top
            bars.append(
                Bar(
                    x0 + offset * bar_w,
                    TOP + plot_h - height,
                    bar_w - 1,
                    height,
                    key,
                    f"{month.month:%B %Y} {name.lower()}: {format_minor(values[key], currency)} {currency}",
                )
            )
        year = str(month.month.year) if index == 0 or month.month.month == 1 else ""
        labels.append((LEFT + index * slot + slot // 2, month.month.strftime("%b"), year))
        rows.append({"month": month.month, **{k: format_minor(v, currency) for k, v in values.items()}})
    grid = [(TOP + plot_h - plot_h * i // 4, format_minor(top * i // 4, currency)) for i in range(5)]
    return Chart(WIDTH, HEIGHT, bars, labels, grid, TOP + plot_h, rows)
