#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Commands that need the database at start: fail with one line rather than a traceback.
NEEDS_DATABASE = {
    "runserver",
    "migrate",
    "migrate_schemas",
    "load_demo",
    "run_billing",
    "run_day",
    "simulate",
    "create_agency",
}
# Commands whose whole job is reading Redis: an unreachable one is a line naming REDIS_URL, not a traceback. The web
# and the workers are not checked: they ride out a Redis outage (/healthz reports it; Celery reconnects).
NEEDS_BROKER = {"beat_health"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local")
    from agencybilling.startup import check_broker, check_database, run_or_exit

    def start() -> None:
        import django
        from django.core.management import execute_from_command_line

        django.setup()
        command = sys.argv[1] if len(sys.argv) > 1 else ""
        if command in NEEDS_DATABASE:
            check_database()
        if command in NEEDS_BROKER:
            check_broker()
        execute_from_command_line(sys.argv)

    run_or_exit(start)


if __name__ == "__main__":
    main()
