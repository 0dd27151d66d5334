#!/usr/bin/env python
"""Django's command-line utility for EduMLOps."""

import os
import sys

# Commands that need the database and the broker: they check both first and stop with one line
# naming the variable to fix, rather than a traceback half way through.
NEEDS_SERVICES = {"runserver", "runstack", "migrate", "seed_demo", "preflight"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edumlops.settings")
    import django
    from django.core.management import execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] in NEEDS_SERVICES:
        django.setup()
        from edumlops.preflight import check_services

        check_services(migrated=sys.argv[1] != "migrate")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
