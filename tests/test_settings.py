"""A bad setting stops start-up with one line naming it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard import env
from dashboard.env import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def start(command, **overrides):
    environment = {**os.environ, **overrides}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("DATABASE_URL", "postgresql://host:notaport/db"),
        ("NATS_URL", "http://127.0.0.1:4222"),
        ("REDIS_URL", "localhost:6379"),
        ("JAEGER_AGENT_PORT", "seventy"),
        ("OTLP_HTTP_PORT", "70000"),
        ("DEBUG", "maybe"),
        ("NATS_CREDS", "/no/such/file.creds"),
        ("DB_STATEMENT_TIMEOUT", "soon"),
        ("EVENT_SCAN_WINDOW_HOURS", "0"),
        ("LOGIN_FAILURE_LIMIT", "many"),
        ("LOGIN_LOCKOUT_MINUTES", "-5"),
    ],
)
def test_a_bad_setting_stops_manage_py_with_one_line_naming_it(variable, value):
    result = start([sys.executable, "manage.py", "check"], **{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Eventscope: bad setting: " + variable)


def test_a_missing_database_url_stops_the_web_process_with_one_line():
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-c", "import dashboard.asgi"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "Eventscope: bad setting: DATABASE_URL is not set (e.g. postgresql://user:pass@host:5432/eventscope)"


def test_a_bad_port_stops_the_worker_with_one_line():
    result = start([sys.executable, "-c", "import dashboard.celery"], EVENTSCOPE_HTTP_PORT="80a")
    assert result.returncode == 2
    assert result.stderr.strip() == "Eventscope: bad setting: EVENTSCOPE_HTTP_PORT='80a' is not a whole number"


def test_env_helpers_parse_good_values(monkeypatch):
    monkeypatch.setenv("X_PORT", "6831")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_port("X_PORT", 1) == 6831
    assert env.env_bool("X_BOOL") is True
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    assert env.env_port("X_UNSET", 4317) == 4317


def test_a_database_url_becomes_django_settings_without_leaking_the_password_in_errors(monkeypatch):
    db = env.database_from_url("DATABASE_URL", "postgresql://u:s%40cret@db.example:6543/events?sslmode=require")
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]) == ("db.example", "6543", "events", "u", "s@cret")
    assert db["OPTIONS"] == {"sslmode": "require"}
    monkeypatch.setenv("DATABASE_URL", "mysql://u:secret@h/db")
    with pytest.raises(ConfigError) as error:
        env.env_url("DATABASE_URL", None, ("postgresql",))
    assert "secret" not in str(error.value)
