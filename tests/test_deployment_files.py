"""compose.yaml, the Dockerfile and .ci/run must not rot: validate them against the
Compose Specification's schema and against the project's real commands and settings."""
import copy
import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = {"web", "collector", "spans", "worker", "demo"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def compose_schema_errors(document):
    """The Compose Specification's JSON schema (compose-spec.json, as vendored by the pinned
    check-jsonschema package in requirements-dev.txt) checked with jsonschema."""
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_validates_against_the_compose_specification_schema(compose):
    assert compose_schema_errors(compose) == []


def test_the_schema_check_catches_a_misspelt_key_and_a_malformed_port(compose):
    """The check is real: a typo in a service and a port that is not a list both fail it."""
    broken = copy.deepcopy(compose)
    broken["services"]["web"]["comand"] = broken["services"]["web"].pop("command")
    broken["services"]["collector"]["ports"] = "4318:4318"
    errors = compose_schema_errors(broken)
    assert any(e.startswith("services/web:") and "'comand'" in e for e in errors), errors
    assert any(e.startswith("services/collector/ports:") for e in errors), errors


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(compose):
    services = compose["services"]
    assert {"postgres", "nats", "redis"} | APP_SERVICES <= set(services)
    for name in {"postgres", "nats", "redis"} | APP_SERVICES:
        assert "healthcheck" in services[name], name
    for name in APP_SERVICES:
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        for dependency in ("postgres", "nats", "redis"):
            assert conditions[dependency] == "service_healthy", (name, dependency)


def test_nats_runs_with_jetstream(compose):
    assert "-js" in compose["services"]["nats"]["command"]


def test_the_app_services_run_the_projects_real_commands(compose):
    commands = {name: compose["services"][name]["command"] for name in APP_SERVICES}
    assert commands["web"][0] == "daphne" and commands["web"][-1] == "dashboard.asgi:application"
    assert commands["collector"][:3] == ["python", "manage.py", "collect"]
    assert commands["worker"][:4] == ["celery", "-A", "dashboard", "worker"]
    assert commands["demo"][:3] == ["python", "manage.py", "demo"]
    assert commands["spans"][:3] == ["python", "manage.py", "receive_spans"]
    assert (ROOT / "collector" / "management" / "commands" / "receive_spans.py").exists()
    # The commands exist: the ASGI app and Celery app import paths, the management commands.
    assert (ROOT / "dashboard" / "asgi.py").exists() and (ROOT / "dashboard" / "celery.py").exists()
    assert (ROOT / "collector" / "management" / "commands" / "collect.py").exists()


def test_compose_sets_only_variables_the_settings_read(compose):
    known = set(re.findall(r'env_\w+\("([A-Z_]+)"', (ROOT / "dashboard" / "settings.py").read_text()))
    for name in APP_SERVICES:
        environment = compose["services"][name].get("environment", {})
        assert set(environment) <= known, (name, set(environment) - known)
    assert {"DATABASE_URL", "NATS_URL", "REDIS_URL", "SECRET_KEY"} <= known


def test_compose_ships_no_secret_key_and_refuses_to_start_without_one(compose):
    """Every app service takes SECRET_KEY from the environment with `${SECRET_KEY:?…}`: no
    default a deployment could keep, and compose stops with the reason when it is unset."""
    for name in APP_SERVICES | {"migrate"}:
        value = compose["services"][name]["environment"]["SECRET_KEY"]
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", value), (name, value)


def test_the_dockerfile_installs_the_pinned_requirements_and_runs_the_web_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)
    assert yaml.safe_load(cmd)[0] == "daphne" and "dashboard.asgi:application" in cmd
    assert "USER " in dockerfile  # not root in the container


def test_every_requirement_is_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[\w.\-+]+$", line), line


def test_ci_installs_node_for_the_frontend_rebuild_and_no_docker_compose():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "need+=(nodejs)" in ci and "need+=(npm)" in ci
    assert "need+=(docker-compose)" not in ci


def host_ports(service):
    """The host side of a service's published ports ("6831:6831/udp" -> "6831/udp")."""
    published = []
    for port in service.get("ports", []):
        port = str(port)
        host, _, container = port.rpartition(":")
        protocol = container.partition("/")[2] or "tcp"
        if host:
            published.append(f"{host.rpartition(':')[2]}/{protocol}")
    return published


def test_the_collector_scales_without_host_port_collisions(compose):
    """`docker compose up --scale collector=3` starts three collectors: none publishes a
    host port or has a fixed container name, and none opens the span ports (the `spans`
    service serves them, on the standard host ports, each published once)."""
    services = compose["services"]
    collector = services["collector"]
    assert host_ports(collector) == [] and "container_name" not in collector
    assert collector["environment"]["EVENTSCOPE_SPAN_RECEIVERS"] == "false"
    assert sorted(host_ports(services["spans"])) == ["14268/tcp", "4317/tcp", "4318/tcp", "6831/udp", "6832/udp"]
    assert "EVENTSCOPE_SPAN_RECEIVERS" not in services["spans"]["environment"]
    everywhere = [port for service in services.values() for port in host_ports(service)]
    assert len(everywhere) == len(set(everywhere)), everywhere
    # The demo sends its spans to the receivers' service.
    assert services["demo"]["environment"]["EVENTSCOPE_SPANS_HOST"] == "spans"
