"""Settings for the web server bench/webhooks.py starts: the test settings with one more URL, a
bare view that answers 202 without work (tests/support/bench_webhooks_urls.py), beside the real
webhook intake in the same process. Never in the production URLs. Bells are batched as in
production (the test settings ring each at once, for the tests' stand-in worker)."""
from portal import settings as production
from portal import settings_test

globals().update({name: value for name, value in vars(settings_test).items() if name.isupper()})
ROOT_URLCONF = "tests.support.bench_webhooks_urls"
JOB_BELL_BATCH_MS = production.JOB_BELL_BATCH_MS
