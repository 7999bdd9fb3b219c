"""Credentials in URLs never reach a log line or an error page."""
import asyncio
import logging
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import path

from collector.secrets import RedactingFormatter, redact_text, redact_url
from runner.servers import free_port
from tests.conftest import run_async, wait_until


@pytest.mark.parametrize(
    "url, shown",
    [
        ("nats://app:s3cret@nats.example:4222", "nats://app:***@nats.example:4222"),
        ("nats://s3cret-token@nats.example:4222", "nats://***@nats.example:4222"),
        ("redis://:s3cret@redis.example:6379/0", "redis://:***@redis.example:6379/0"),
        ("postgresql://events@db.example/events?password=s3cret&sslmode=require",
         "postgresql://***@db.example/events?password=***&sslmode=require"),
        ("nats://a:s3cret@n1:4222,nats://b:s3cret@n2:4222", "nats://a:***@n1:4222,nats://b:***@n2:4222"),
        ("nats://nats.example:4222", "nats://nats.example:4222"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
    ],
)
def test_unit_redact_url_hides_passwords_tokens_lone_users_and_secret_parameters(url, shown):
    assert redact_url(url) == shown


def test_unit_redact_text_redacts_every_url_in_a_message():
    message = "Error 111 connecting to redis://:s3cret@10.0.0.5:6379/0; fallback nats://tok3n@10.0.0.6:4222."
    assert "s3cret" not in redact_text(message) and "tok3n" not in redact_text(message)
    assert "10.0.0.5:6379" in redact_text(message)


@pytest.fixture
def secured_nats(tmp_path):
    """Two real nats-servers: one wanting user and password, one a token."""
    binary = Path(sys.executable).parent / "nats-server"
    servers = []

    def start(*auth):
        port = free_port(24222)
        process = subprocess.Popen([str(binary), "-a", "127.0.0.1", "-p", str(port), *auth],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(process)
        wait_until(lambda: not _free(port), 10, "nats-server to listen")
        return port

    yield {"password": start("--user", "app", "--pass", "pa55-s3cret"), "token": start("--auth", "t0ken-s3cret")}
    for process in servers:
        process.terminate()
        process.wait(10)


def _free(port):
    from runner.servers import port_is_free

    return port_is_free(port)


def test_the_collector_logs_the_nats_server_it_connected_to_without_its_credentials(secured_nats, caplog):
    """The "connected to NATS at …" line names the server, never the password or the token
    (the URL nats-py reports back still carries them)."""
    from collector.brokers.nats import NatsAdapter

    async def connect(url):
        adapter = NatsAdapter(url, deliver=None)
        try:
            assert await adapter.connect(asyncio.Event())
            assert adapter.nc.is_connected
        finally:
            await adapter.close()

    caplog.set_level(logging.INFO, logger="eventscope.nats")
    run_async(connect(f"nats://app:pa55-s3cret@127.0.0.1:{secured_nats['password']}"))
    run_async(connect(f"nats://t0ken-s3cret@127.0.0.1:{secured_nats['token']}"))
    lines = [record.getMessage() for record in caplog.records if record.name == "eventscope.nats"]
    connected = [line for line in lines if line.startswith("connected to NATS at")]
    assert len(connected) == 2, lines
    assert f"127.0.0.1:{secured_nats['password']}" in connected[0]
    assert not any("s3cret" in line for line in lines), lines


PASSWORD = secrets.token_hex(8)  # made at run time: the page also shows this file's source lines


def _explode(request):
    broker = f"nats://app:{PASSWORD}@nats.example:4222"  # a local variable the page lists  # noqa: F841
    raise ConnectionError(f"cannot reach redis://:{PASSWORD}@redis.example:6379/0")


urlpatterns = [path("explode/", _explode)]

SECRET_URLS = dict(
    NATS_URL=f"nats://app:{PASSWORD}@nats.example:4222",
    REDIS_URL=f"redis://:{PASSWORD}@redis.example:6379/0",
    CELERY_BROKER_URL=f"redis://:{PASSWORD}@redis.example:6379/0",
    RABBITMQ_URL=f"amqp://app:{PASSWORD}@rabbit.example:5672/%2F",
    CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                "CONFIG": {"hosts": [f"redis://:{PASSWORD}@redis.example:6379/0"]}}},
)


def test_a_debug_error_page_and_the_error_log_show_urls_without_their_passwords(alice, caplog):
    """With DEBUG on, Django's error page lists every setting, the exception and each
    frame's variables, and the error is logged with its traceback: the URLs in them keep
    their hosts and lose their credentials."""
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    with override_settings(DEBUG=True, ROOT_URLCONF=__name__, **SECRET_URLS):
        response = client.get("/explode/", HTTP_ACCEPT="text/html")
        plain = client.get("/explode/", HTTP_ACCEPT="text/plain")
    assert response.status_code == 500
    html, text = response.content.decode(), plain.content.decode()
    assert "NATS_URL" in html and "nats.example:4222" in html and "redis.example:6379" in html
    assert "Traceback" in text and "rabbit.example" in text
    for page in (html, text):
        assert PASSWORD not in page, [line for line in page.splitlines() if PASSWORD in line][:5]
    # The log line Django writes for the error, through the formatter the settings configure.
    [console] = [h for h in logging.getLogger().handlers if isinstance(h.formatter, RedactingFormatter)]
    logged = [console.format(r) for r in caplog.records if r.name == "django.request"]
    assert logged and all("redis.example:6379" in line and PASSWORD not in line for line in logged)
