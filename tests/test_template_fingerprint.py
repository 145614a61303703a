"""The tests' migrated template database is made again when what a fresh `migrate` makes changes:
the migration files and the project modules whose SQL they run."""
import re

from tests.support.template import MIGRATION_SQL_MODULES, ROOT

APPS = ("portal", "invoices", "payments", "reminders", "integrations")


def test_the_fingerprint_covers_every_project_module_a_migration_imports():
    imported = set()
    for app in APPS:
        for path in (ROOT / app).glob("**/migrations/*.py"):
            imported |= set(re.findall(rf"^from ((?:{'|'.join(APPS)})\.[\w.]+) import", path.read_text(), re.M))
    assert imported == set(MIGRATION_SQL_MODULES)
