"""The fault workers' settings (FaultStack starts them with these when a scenario asks): the test
settings, with three changes a drill needs and nothing else.

- Mail goes by SMTP to EMAIL_URL (the drills' own mail server, tests/faults/smtp.py): the test
  settings keep mail in memory or in files, which can neither fail nor hang like a mail server.
  portal/settings.py reads EMAIL_URL already (host, port); settings_test only replaces the backend.
- The clients of the remote ends wait FAULTS_CLIENT_TIMEOUT seconds (tests.faults.apps): a drill
  times every attempt out in turn, and at the production timeouts (10 s for Mollie's and the
  accounting endpoint's answers) one run of a drill would take minutes.
- Encrypted files (pre-rendered PDFs) go to FAULTS_MEDIA_DIR, where a drill counts them."""
import os

from portal.settings import env
from portal.settings_test import *  # noqa: F401,F403
from portal.settings_test import INSTALLED_APPS, STORAGES

if os.environ.get("EMAIL_URL"):
    EMAIL_BACKEND = env.email_url("EMAIL_URL")["EMAIL_BACKEND"]
if os.environ.get("FAULTS_CLIENT_TIMEOUT"):
    EMAIL_TIMEOUT = float(os.environ["FAULTS_CLIENT_TIMEOUT"])
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.faults.apps.FaultsConfig"]
if os.environ.get("FAULTS_MEDIA_DIR"):
    STORAGES = {**STORAGES, "encrypted": {**STORAGES["encrypted"],
                                          "OPTIONS": {"location": os.environ["FAULTS_MEDIA_DIR"]}}}
