#!/usr/bin/env python
"""Django's command-line utility. With no DATABASE_URL the settings start the embedded servers."""
import os
import sys

# Set-up runs as the role that owns the tables, and only set-up: these commands alone get the
# owner's connection and read DATABASE_OWNER_PASSWORD (portal/settings.py). Everything else,
# web, worker and beat included, connects as the application role.
OWNER_COMMANDS = {"migrate", "makemigrations", "sqlmigrate", "showmigrations", "db_bootstrap", "flush", "sqlflush"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if len(sys.argv) > 1 and sys.argv[1] in OWNER_COMMANDS:
        os.environ.setdefault("DJANGO_DB_ROLE", "owner")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
