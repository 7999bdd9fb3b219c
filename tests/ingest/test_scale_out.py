"""Scale out: two collectors share the observer durable (its deliver group) on one
backlog; one is killed with SIGKILL midway, and still every message is stored exactly once
and the per-minute and hourly rollups count each once. Real JetStream and PostgreSQL of the test's own."""
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from runner import servers
from runner.supervise import RECEIVER_PORTS
from tests.ingest.test_reliability import ROOT, private, publish, stored, wait_for_count  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def start_collector(box, index):
    """A collector with span receivers on ports of its own, as on another machine."""
    env = dict(box.env)
    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 21000 + 100 * index, kind=kind))
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    box.collectors.append(process)
    return process


def stored_by(box):
    """{collector name: messages it stored}, from the heartbeats (a killed one keeps its last)."""
    with psycopg.connect(box.pg.url, connect_timeout=2) as conn:
        rows = conn.execute("SELECT name, coalesce((counters->>'stored')::bigint, 0) "
                            "FROM collector_collectorheartbeat").fetchall()
    return dict(rows)


def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_two_collectors_on_one_durable_one_killed_midway_store_every_message_once(private):  # noqa: F811
    bus, half = private.bus.url, 10_000
    publish(bus, "SHARED", "shared.orders", 1)
    first, second = start_collector(private, 1), start_collector(private, 2)
    # Both listening (a heartbeat each) before the backlog: the deliver group then shares it.
    assert wait_until(lambda: len(stored_by(private)) == 2), stored_by(private)
    publish(bus, "SHARED", "shared.orders", half - 1, start=1)
    # Both take part: each heartbeat (every 5 s) shows messages it stored itself.
    assert wait_until(lambda: sum(1 for n in stored_by(private).values() if n > 0) == 2), stored_by(private)
    publish(bus, "SHARED", "shared.orders", half, start=half)
    assert wait_until(lambda: stored(private, "SHARED")[0] > half + 500, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.poll() is None
    # What the killed one had delivered but not acked comes back to the survivor after
    # the observer's ack wait (60 s).
    assert wait_for_count(private, "SHARED", 2 * half, timeout=150) == (2 * half, 2 * half)
    time.sleep(1)
    assert stored(private, "SHARED") == (2 * half, 2 * half)
    with psycopg.connect(private.pg.url) as conn:
        counted = conn.execute("SELECT sum(count) FROM collector_eventrollup WHERE subject = 'shared.orders'").fetchone()
        hourly = conn.execute("SELECT sum(count) FROM collector_eventhourrollup WHERE subject = 'shared.orders'").fetchone()
    assert counted == (2 * half,) and hourly == (2 * half,)
