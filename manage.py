#!/usr/bin/env python
"""Django's command-line utility. With no DATABASE_URL the settings start the embedded servers."""
import os
import sys

# Schema changes run as the role that owns the tables; everything else as the application role.
OWNER_COMMANDS = {"migrate", "makemigrations", "sqlmigrate", "showmigrations", "db_bootstrap", "flush"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if len(sys.argv) > 1 and sys.argv[1] in OWNER_COMMANDS:
        os.environ.setdefault("DJANGO_DB_ROLE", "owner")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
