#!/usr/bin/env python3
"""Print the figures the reliability tests recorded (`.local/reliability/*.json`) as the Markdown table kept in
docs/reliability.md: `python scripts/reliability_table.py [--dir DIR]`.

Each test writes one JSON file through `tests.reliability.harness.record_figures`; this script only reads them.
Exits non-zero with one line when there is nothing to print.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"test", "size", "recorded_at", "seed"}


def _value(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _sort_key(path: Path) -> tuple[int, str]:
    name = path.stem.upper()
    digits = "".join(ch for ch in name[1:3] if ch.isdigit())
    return (int(digits) if name.startswith("R") and digits else 99, name)


def table(directory: Path) -> str:
    rows = ["| test | size | recorded | figures |", "|---|---|---|---|"]
    for path in sorted(directory.glob("*.json"), key=_sort_key):
        figures = json.loads(path.read_text())
        shown = "; ".join(f"{key} = {_value(value)}" for key, value in sorted(figures.items()) if key not in SKIP)
        rows.append(
            f"| {figures.get('test', path.stem)} | {figures.get('size', '?')} | "
            f"{figures.get('recorded_at', '?')} | {shown.replace('|', '/')} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local" / "reliability")
    args = parser.parse_args()
    if not any(args.dir.glob("*.json")):
        print(
            f"error: no figures in {args.dir}: run `make test-chaos` (or the tests in tests/reliability) first",
            file=sys.stderr,
        )
        return 1
    print(table(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
