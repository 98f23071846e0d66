#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agencybilling.settings.local")
    from agencybilling.startup import BROKER_COMMANDS, check_broker, check_database, command_needs_database, run_or_exit

    def start() -> None:
        import django
        from django.core.management import execute_from_command_line

        django.setup()
        command = sys.argv[1] if len(sys.argv) > 1 else ""
        if command_needs_database(command):
            check_database()  # one line naming DATABASE_URL rather than a traceback
        if command in BROKER_COMMANDS:
            check_broker()
        execute_from_command_line(sys.argv)

    run_or_exit(start)


if __name__ == "__main__":
    main()
