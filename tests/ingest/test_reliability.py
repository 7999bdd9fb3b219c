"""At least once, stored once: the collector survives kill -9, a database outage and a
NATS restart without losing or doubling a message. Each test runs against servers of
its own, never the shared ones."""
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import psycopg
import pytest

from runner import servers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def private(request):
    folder = Path(tempfile.mkdtemp(prefix="rel-", dir=ROOT / "var"))
    # Ports the kernel hands out, not the embedded servers' preferred ones: a server stopped
    # mid-test frees its port, and another run's embedded server starting meanwhile would take a
    # preferred port and answer in its place.
    pg = servers.Postgres(folder / "postgres", port=servers.free_port(), durable=False).start()
    bus = servers.Nats(folder / "nats", port=servers.free_port()).start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "EVENTSCOPE_METRICS_PORT": "0",
           "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    box = type("Private", (), {"pg": pg, "bus": bus, "env": env, "folder": folder, "collectors": []})()
    yield box
    for process in box.collectors:
        if process.poll() is None:
            process.kill()
            process.wait()
    box.bus.stop()
    box.pg.stop()
    shutil.rmtree(folder, ignore_errors=True)


def start_collector(box):
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=box.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    box.collectors.append(process)
    return process


def publish(url, stream, subject, count, start=0):
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            await js.add_stream(name=stream, subjects=[subject])
        except nats.js.errors.BadRequestError:
            pass
        for n in range(start, start + count):
            await js.publish_async(subject, b'{"type": "t", "version": "1", "timestamp": "2026-11-27T10:00:00Z", "body": {"n": %d}}' % n)
        await js.publish_async_completed()
        await nc.close()

    asyncio.run(go())


def stored(box, stream):
    try:
        with psycopg.connect(box.pg.url, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*), count(DISTINCT seq) FROM collector_event WHERE stream = %s",
                                [stream]).fetchone()
    except psycopg.OperationalError:
        return None


def wait_for_count(box, stream, expected, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = stored(box, stream)
        if counts and counts[0] >= expected:
            return counts
        time.sleep(0.2)
    raise AssertionError(f"only {stored(box, stream)} of {expected} stored after {timeout} s")


def ack_floor(box, stream):
    async def go():
        nc = await nats.connect(box.bus.url)
        info = await nc.jsm().consumer_info(stream, "eventscope")
        await nc.close()
        return info.ack_floor.stream_seq

    return asyncio.run(go())


def test_twenty_thousand_messages_survive_three_kill_9s_each_stored_once(private):
    publish(private.bus.url, "KILL", "kill.n", 20_000)
    rng = random.Random(7)
    for _ in range(3):
        process = start_collector(private)
        time.sleep(rng.uniform(1.0, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    start_collector(private)
    assert wait_for_count(private, "KILL", 20_000) == (20_000, 20_000)
    time.sleep(1)
    assert stored(private, "KILL") == (20_000, 20_000)


def test_a_database_outage_acks_nothing_loses_nothing_and_heals_itself(private):
    start_collector(private)
    publish(private.bus.url, "PGDOWN", "pgdown.n", 2000)
    wait_for_count(private, "PGDOWN", 2000)
    deadline = time.monotonic() + 10
    while ack_floor(private, "PGDOWN") < 2000 and time.monotonic() < deadline:
        time.sleep(0.1)  # the ack follows the commit
    floor = ack_floor(private, "PGDOWN")
    port = private.pg.port
    private.pg.stop()
    publish(private.bus.url, "PGDOWN", "pgdown.n", 3000, start=2000)
    time.sleep(10)
    # Nothing was stored, so nothing may have been acked.
    assert ack_floor(private, "PGDOWN") == floor == 2000
    private.pg = servers.Postgres(private.pg.folder, port=port, durable=False).start()
    assert wait_for_count(private, "PGDOWN", 5000) == (5000, 5000)
    time.sleep(1)
    assert stored(private, "PGDOWN") == (5000, 5000)


def test_a_nats_restart_is_survived_without_loss(private):
    start_collector(private)
    publish(private.bus.url, "NATSDOWN", "natsdown.n", 1000)
    wait_for_count(private, "NATSDOWN", 1000)
    port = private.bus.port
    private.bus.stop()
    time.sleep(3)
    private.bus = servers.Nats(private.bus.folder, port=port).start()
    publish(private.bus.url, "NATSDOWN", "natsdown.n", 1000, start=1000)
    assert wait_for_count(private, "NATSDOWN", 2000, timeout=60) == (2000, 2000)
