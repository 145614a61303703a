"""The table owner, for test and benchmark plumbing only: migrate, flush, bulk fills.

Web, worker and beat never hold the owner's credentials: the settings have one database
alias, the application role (portal/settings.py). Plumbing that must migrate, empty every
table or fill one fast borrows an `owner` alias for the span of a `with as_owner():` block,
built from the application's alias with DATABASE_OWNER_ROLE and DATABASE_OWNER_PASSWORD from
this process's environment, and removed again afterwards. So nothing started from the same
settings (the browser tests' web server and worker) ever has it, and no test body can reach
it by accident.

    with as_owner() as owner:
        call_command("flush", database=owner, interactive=False, verbosity=0)
"""
from __future__ import annotations

import os
from contextlib import contextmanager

OWNER = "owner"


@contextmanager
def as_owner():
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, connections

    if OWNER in connections.settings:  # nested: the outer block owns it
        yield OWNER
        return
    app = connections.settings[DEFAULT_DB_ALIAS]
    options = {key: value for key, value in app["OPTIONS"].items() if key != "pool"}
    connections.settings[OWNER] = {
        **app, "USER": settings.DATABASE_OWNER_ROLE, "PASSWORD": os.environ.get("DATABASE_OWNER_PASSWORD", ""),
        "OPTIONS": options, "CONN_MAX_AGE": 0,
    }
    try:
        yield OWNER
    finally:
        try:
            if hasattr(connections._connections, OWNER):
                connections[OWNER].close()
                del connections[OWNER]
        finally:
            del connections.settings[OWNER]
