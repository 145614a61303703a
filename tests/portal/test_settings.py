"""Production mode demands its secrets and passes Django's deployment checks."""
import os
import subprocess
import sys
from pathlib import Path

from portal.crypto import generate_key

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "p" * 20 + "-Zq8v7w6x5y4z3A2B1C0dEfGhIjKlMnOpQrStUvWxYz",
    "ALLOWED_HOSTS": "portal.example.com",
    "SITE_URL": "https://portal.example.com",
    "DATABASE_URL": "postgres://admin@db.invalid:5432/portal",
    "DATABASE_APP_PASSWORD": "app-password",
    "DATABASE_OWNER_PASSWORD": "owner-password",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "EMAIL_URL": "smtp://mail.invalid:587",
    "ENCRYPTION_KEYS": generate_key("k1"),
    "RLS_SCOPE_KEY": "test-rls-scope-key-0123456789-abcdefghijklmnop",
}


def _manage(*args, env):
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and not k.startswith("DJANGO_")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_production_passes_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    for missing in ("SECRET_KEY", "ALLOWED_HOSTS", "SITE_URL", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL"):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert f"{missing} must be set when DJANGO_ENV=production" in result.stderr


def test_production_settings_are_hardened():
    code = ("from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, "
            "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.PASSWORD_HASHERS[0])")
    result = _manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert result.stdout.split() == ["False", "True", "True", "31536000", "True",
                                     "portal.passwords.Argon2idPasswordHasher"], result.stderr


def test_production_computes_once_what_every_request_would_repeat():
    # Issue 17, point 6: templates compiled once per process (the cached loader), static files
    # under hashed names and compressed (served with "immutable"), database connections pooled.
    code = ("from django.template import engines; from django.conf import settings as s; "
            "loader = engines['django'].engine.template_loaders[0]; "
            "print(type(loader).__module__ + '.' + type(loader).__name__, s.STORAGES['staticfiles']['BACKEND'], "
            "'pool' in s.DATABASES['default']['OPTIONS'], s.DATABASES['default']['OPTIONS']['prepare_threshold'])")
    result = _manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    # Statements bound on the server are prepared on the connection after 5 runs (portal.compiled).
    assert result.stdout.split() == ["django.template.loaders.cached.Loader",
                                     "whitenoise.storage.CompressedManifestStaticFilesStorage", "True", "5"], result.stderr
    # Behind PgBouncer without prepared statements: off; a typo is refused, not guessed at.
    result = _manage("shell", "--no-imports", "-c", code, env={**PRODUCTION_ENV, "DATABASE_PREPARE_THRESHOLD": "none"})
    assert result.stdout.split()[-1] == "None", result.stderr
    result = _manage("check", env={**PRODUCTION_ENV, "DATABASE_PREPARE_THRESHOLD": "fifty"})
    assert result.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD must be a whole number or 'none'" in result.stderr


def test_a_web_process_is_warm_before_its_first_request_and_touches_no_server_doing_so():
    # portal/wsgi.py compiles the templates and loads the URLconf and translations at start-up,
    # without a database or Redis (none answers at these addresses), so gunicorn's --preload is safe.
    code = ("import portal.wsgi; from django.template import engines; from django.urls import get_resolver; "
            "from django.utils import translation; "
            "cache = engines['django'].engine.template_loaders[0].get_template_cache; "
            "print('base.html' in cache, len(cache) > 20, "
            "get_resolver()._populated, 'nl' in translation.trans_real._translations)")
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and not k.startswith("DJANGO_")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**base, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "portal.settings"})
    assert result.stdout.split() == ["True", "True", "True", "True"], result.stderr[-3000:]
