"""Fixtures of the live tests: the real web process (daphne serving dashboard.asgi, the
way it runs in production: websockets need an ASGI server) on the test database, a
collector with the live forwarder, and a websocket client with a logged-in session."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from collector.live import forwarder as live
from runner.servers import free_port, port_is_free
from tests.conftest import RunningCollector, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


def test_database_url():
    """The URL of the database this test run uses (pytest-django's test_ copy)."""
    from django.db import connection

    db = connection.settings_dict
    user = quote(db.get("USER") or "")
    password = quote(db.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if user or password else ""
    query = dict(db.get("OPTIONS") or {})
    host = db.get("HOST") or ""
    if host.startswith("/"):
        query["host"] = host
        host = ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{credentials}{host}{port}/{quote(db['NAME'])}" + (f"?{urlencode(query)}" if query else "")


test_database_url.__test__ = False  # a helper, not a test


class Daphne:
    """`daphne dashboard.asgi:application` in a subprocess; stop() and start() again on the
    same port are what a user sees as the server going away and coming back."""

    def __init__(self, env=None, port=None):
        self.port = port or free_port(18000)
        self.env = {**os.environ, "DATABASE_URL": test_database_url(), "LOG_LEVEL": "WARNING", **(env or {})}
        self.process = None
        self.log = ROOT / "var" / f"daphne-test-{self.port}.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws/events/"

    def start(self, timeout=30):
        self.log.parent.mkdir(exist_ok=True)
        wait_until(lambda: port_is_free(self.port), 10, f"port {self.port} to be free")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "dashboard.asgi:application"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def answers():
            if self.process.poll() is not None:
                raise AssertionError(f"daphne exited: {self.log.read_text()[-3000:]}")
            return not port_is_free(self.port)

        wait_until(answers, timeout, "daphne to listen")
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def freeze(self):
        """SIGSTOP: a web process too busy to read its channel layer messages."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def web(django_db_setup):
    """One web process for a module's tests: it keeps nothing between them but its
    connections (each test logs in its own user)."""
    server = Daphne().start()
    yield server
    server.stop()


@pytest.fixture
def live_collector(transactional_db):
    """A running collector with the live forwarder installed, as `manage.py collect` has it."""
    running = RunningCollector(installs=[live.install])
    yield running
    running.stop()


def unique_prefix():
    return "live" + uuid.uuid4().hex[:8]


def session_cookie(user):
    """A session cookie for `user`, as the login page would set it."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.fixture
def charlie_cookie(charlie):
    """Charlie (a viewer) logged in: his session cookie."""
    return session_cookie(charlie)


def login_by_cookie(page, web, user):
    """Put `user`'s session cookie into the browser, as logging in would (faster than
    hashing a password on a loaded machine; one test logs in through the form)."""
    page.context.add_cookies([{"name": "sessionid", "value": session_cookie(user).split("=", 1)[1],
                               "url": web.url}])


class TailClient:
    """A websocket client of /ws/events/ (aiohttp), as a script or the benchmark uses it."""

    def __init__(self, web, cookie=None):
        self.web, self.cookie = web, cookie
        self.session = self.socket = None
        self.events, self.backfilled, self.stats, self.other = [], [], [], []

    async def __aenter__(self):
        import aiohttp

        headers = {"Origin": self.web.url}
        if self.cookie:
            headers["Cookie"] = self.cookie
        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(self.web.ws_url, headers=headers)
        return self

    async def __aexit__(self, *exc):
        await self.socket.close()
        await self.session.close()

    async def send(self, message):
        await self.socket.send_str(json.dumps(message))

    async def subscribe(self, filters=None, credit=1000, **extra):
        await self.send({"type": "subscribe", "filters": filters or {}, "credit": credit, **extra})

    async def read_until(self, condition, timeout=20, grant=True):
        """Read messages until `condition(self)` holds; grants credit for what it draws."""
        import aiohttp

        deadline = time.monotonic() + timeout
        while not condition(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out: {len(self.events)} events, {len(self.backfilled)} backfilled, "
                                     f"last stats {self.stats[-1:]}, other {self.other[-3:]}")
            try:
                message = await self.socket.receive(timeout=left)
            except TimeoutError:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {message}")
            content = json.loads(message.data)
            if content["type"] == "events":
                (self.backfilled if content["backfill"] else self.events).extend(content["events"])
                if grant and content["events"]:
                    await self.send({"type": "credit", "n": len(content["events"])})
            elif content["type"] == "stats":
                self.stats.append(content)
            else:
                self.other.append(content)
        return self
