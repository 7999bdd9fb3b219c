"""The collector as a process (`manage.py collect`, decode worker included): memory
bounded by bytes under a backlog of large messages, a SIGTERM that ends it within
seconds even when the database hangs, and no child left behind by a stop or a SIGKILL.
Each test runs against servers of its own."""
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import psutil
import psycopg
import pytest

from runner import servers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

MB = 1024 * 1024


@pytest.fixture
def private():
    folder = Path(tempfile.mkdtemp(prefix="proc-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres", durable=False).start()
    bus = servers.Nats(folder / "nats").start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "EVENTSCOPE_METRICS_PORT": "0",
           "LOG_LEVEL": "WARNING", "EVENTSCOPE_DECODE_WORKERS": "1"}
    for name in ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT"):
        env[name] = str(servers.free_port(kind="udp" if "AGENT" in name or "BINARY" in name else "tcp"))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    box = type("Private", (), {"pg": pg, "bus": bus, "env": env, "folder": folder, "collectors": []})()
    yield box
    for process in box.collectors:
        if process.poll() is None:
            process.kill()
            process.wait()
    box.bus.stop()
    try:
        os.killpg(box.pg.process.pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    box.pg.stop()
    shutil.rmtree(folder, ignore_errors=True)


def start_collector(box):
    log = open(box.folder / f"collector-{len(box.collectors)}.log", "wb")
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=box.env,
                               stdout=log, stderr=subprocess.STDOUT)
    box.collectors.append(process)
    return process


def publish(url, stream, subject, payloads):
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            await js.add_stream(name=stream, subjects=[f"{subject.split('.')[0]}.>"])
        except nats.js.errors.BadRequestError:
            pass
        for start in range(0, len(payloads), 50):
            for data in payloads[start:start + 50]:
                await js.publish_async(subject, data)
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


def wait_for_count(box, stream, expected, timeout=60, while_waiting=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if while_waiting is not None:
            while_waiting()
        counts = stored(box, stream)
        if counts and counts[0] >= expected:
            return counts
        time.sleep(0.1)
    raise AssertionError(f"only {stored(box, stream)} of {expected} stored after {timeout} s")


def family(process):
    """The collector and every process under it."""
    parent = psutil.Process(process.pid)
    return [parent] + parent.children(recursive=True)


def rss(processes):
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def alive(processes):
    """Those still running (a zombie waiting for its reaper has ended)."""
    left = []
    for proc in processes:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            pass
    return left


def wait_until_gone(processes, timeout=5.0):
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [(proc.pid, proc.name()) for proc in alive(processes)]


def envelope(n, size):
    head = b'{"type": "blob.stored", "version": "1", "timestamp": "2026-11-27T10:00:00Z", "body": {"n": %d, "text": "' % n
    return head + b"eventscope " * ((size - len(head) - 4) // 11) + b'"}}'


def test_a_backlog_of_large_messages_keeps_the_collector_and_its_decode_worker_under_400_mb(private):
    """2,000 messages of 900 KB waiting on a stream: the collector stores them all while
    its memory (resident, decode worker included) stays under 400 MB, because what it
    holds is bounded by bytes, and the observer's flow control holds the rest back."""
    publish(private.bus.url, "BLOBS", "blobs.stored", [envelope(n, 900 * 1024) for n in range(2000)])
    process = start_collector(private)
    peak = [0]

    def sample():
        if process.poll() is not None:
            tail = (private.folder / "collector-0.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the collector exited with code {process.returncode}:\n{tail}")
        peak[0] = max(peak[0], rss(family(process)))
        if peak[0] > 400 * MB:
            process.kill()
            raise AssertionError(f"the collector and its children reached {peak[0] / MB:.0f} MB")

    started = time.monotonic()
    counts = wait_for_count(private, "BLOBS", 2000, timeout=300, while_waiting=sample)
    print(f"\n2,000 messages of 900 KB stored in {time.monotonic() - started:.1f} s; "
          f"peak RSS {peak[0] / MB:.0f} MB (collector and decode worker)")
    assert counts == (2000, 2000)
    assert peak[0] < 400 * MB


def test_sigterm_stops_the_collector_within_seconds_while_the_database_hangs_and_leaves_nothing(private):
    """With PostgreSQL stopped mid-batch (SIGSTOP: connections open, no answer), SIGTERM
    ends the collector within a few seconds, its decode worker with it; the batch it could
    not commit stays unacked on the stream (to be redelivered)."""
    process = start_collector(private)
    publish(private.bus.url, "HANG", "hang.n", [b'{"n": %d}' % n for n in range(500)])
    wait_for_count(private, "HANG", 500)
    processes = family(process)
    assert len(processes) >= 2, "the decode worker did not start"
    os.killpg(private.pg.process.pid, signal.SIGSTOP)
    try:
        publish(private.bus.url, "HANG", "hang.n", [b'{"n": %d}' % n for n in range(500, 1000)])
        time.sleep(2)  # the collector is now writing a batch to a database that does not answer
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the collector did not stop within 20 s of SIGTERM")
        took = time.monotonic() - started
        left = wait_until_gone(processes)
    finally:
        os.killpg(private.pg.process.pid, signal.SIGCONT)
    print(f"\nstopped {took:.1f} s after SIGTERM, database hanging")
    assert took < 8, f"the collector took {took:.1f} s to stop"
    assert left == [], f"left running after the collector stopped: {left}"
    assert stored(private, "HANG")[0] < 1000
    assert ack_floor(private, "HANG") < 1000


def ack_floor(box, stream):
    async def go():
        nc = await nats.connect(box.bus.url)
        info = await nc.jsm().consumer_info(stream, "eventscope")
        await nc.close()
        return info.ack_floor.stream_seq

    return asyncio.run(go())


def test_sigkill_of_the_collector_leaves_no_process_of_it_behind(private):
    """The decode worker (and whatever else the collector started) dies with it, even
    when the collector is killed outright and cannot shut its pool down."""
    process = start_collector(private)
    publish(private.bus.url, "KILLED", "killed.n", [b'{"n": %d}' % n for n in range(100)])
    wait_for_count(private, "KILLED", 100)
    processes = family(process)
    assert len(processes) >= 2, "the decode worker did not start"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert wait_until_gone(processes) == []
