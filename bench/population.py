"""Realistic agencies for the benchmarks, from the seed-data builder (`agencybilling/seed.py`): the benchmark
plan and clients written in bulk (set-up is not what is measured). The mix is fixed by a seed, so every run
bills the same rows.
"""

from __future__ import annotations

from datetime import date, timedelta

from agencybilling.seed import PLANS, Mix, clients_bulk, partner_plan

PLAN_NAME = PLANS["bench"]["name"]
__all__ = ["PLAN_NAME", "Mix", "bench_plan", "clients_populate", "month_start", "previous_month"]


def bench_plan():
    return partner_plan("bench")


# The benchmarks' name for the builder's bulk path.
clients_populate = clients_bulk


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
