"""kill -9 at the risky moments: the real `manage.py collect` kills itself (fault points read
from EVENTSCOPE_FAULT, collector.ingest.faults) between a commit and its ack, and between an
ack and the next batch. After a restart every message is stored once, and what is derived
from them agrees with them: rollup counts, topics, dead letters and their rollup."""
import asyncio
import signal
import subprocess
import sys
import time

import nats
import psycopg
import pytest

from tests.ingest import test_reliability as reliability

pytestmark = pytest.mark.slow
private = reliability.private  # PostgreSQL and NATS of the test's own

STREAM = "FAULT"
SUBJECTS = ("fault.orders", "fault.payments", "fault.orders.dlq")


def publish(url, start, count):
    """`count` messages from number `start` on: orders, payments and every tenth a dead letter
    (some with an attempts header the integer column cannot hold)."""
    async def go():
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            await js.add_stream(name=STREAM, subjects=["fault.>"])
        except nats.js.errors.BadRequestError:
            pass
        for n in range(start, start + count):
            if n % 10 == 9:
                attempts = "99999999999" if n % 100 == 99 else str(n % 5 + 1)
                await js.publish_async("fault.orders.dlq", b'{"order": %d}' % n,
                                       headers={"X-Attempts": attempts, "X-Error": f"failed {n}"})
            else:
                await js.publish_async(SUBJECTS[n % 2], b'{"type": "t", "version": "1", "body": {"n": %d}}' % n)
        await js.publish_async_completed()
        await nc.close()

    asyncio.run(go())


def start(box, fault=None):
    # Decode workers are left out: what becomes of them after a SIGKILL is another test's subject.
    env = {**box.env, "EVENTSCOPE_DECODE_WORKERS": "0"}
    if fault:
        env["EVENTSCOPE_FAULT"] = fault
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=reliability.ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    box.collectors.append(process)
    return process


def killed_by_its_fault_point(process, timeout=60):
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the collector did not reach its fault point") from None
    return process.returncode == -signal.SIGKILL


def query(box, sql, *params):
    with psycopg.connect(box.pg.url) as conn:
        return conn.execute(sql, params).fetchall()


def observer(box, deliveries=False):
    """(ack floor, messages pending) of the observer consumer, and with `deliveries` how many
    deliveries it has made in all (redeliveries included)."""
    async def go():
        nc = await nats.connect(box.bus.url)
        info = await nc.jsm().consumer_info(STREAM, "eventscope")
        await nc.close()
        found = (info.ack_floor.stream_seq, (info.num_pending or 0) + (info.num_ack_pending or 0))
        return found + (info.delivered.consumer_seq,) if deliveries else found

    return asyncio.run(go())


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_kill_9_between_commit_and_ack_and_between_ack_and_next_batch_loses_and_doubles_nothing(private):
    publish(private.bus.url, 0, 1500)
    first = start(private, fault="after-commit")
    assert killed_by_its_fault_point(first)
    # It died at the risky moment: events committed, their dead letters not yet, nothing acked.
    committed = query(private, "SELECT count(*) FROM collector_event")[0][0]
    assert committed > 0 and query(private, "SELECT count(*) FROM collector_deadletter")[0][0] == 0
    assert observer(private)[0] == 0

    publish(private.bus.url, 1500, 1500)
    second = start(private, fault="after-ack")
    assert killed_by_its_fault_point(second)  # only reachable once a batch was committed and acked

    publish(private.bus.url, 3000, 1000)
    last = start(private)
    # What the killed ones held unacked comes back after the consumer's ack wait (60 s).
    wait_for(lambda: observer(private) == (4000, 0), 150, "every message acked")

    events = query(private, "SELECT seq, subject, ts, id FROM collector_event WHERE stream = %s", STREAM)
    assert sorted(seq for seq, *_ in events) == list(range(1, 4001))  # each once, none missing
    per_subject = {s: [e for e in events if e[1] == s] for s in SUBJECTS}
    # The rollup counts each message once, though the first batch was committed twice.
    rollup = dict(query(private, "SELECT subject, sum(count)::int FROM collector_eventrollup GROUP BY subject"))
    assert rollup == {s: len(rows) for s, rows in per_subject.items()}
    hourly = dict(query(private, "SELECT subject, sum(count)::int FROM collector_eventhourrollup GROUP BY subject"))
    assert hourly == rollup
    topics = {name: (first_seen, last_seen) for name, first_seen, last_seen in
              query(private, "SELECT name, first_seen, last_seen FROM collector_topic")}
    assert topics == {s: (min(e[2] for e in rows), max(e[2] for e in rows)) for s, rows in per_subject.items()}
    # One dead letter per DLQ message, each linked to its event, counted once in its rollup.
    letters = query(private, "SELECT stream_seq, event_id, deliveries, note FROM collector_deadletter")
    dlq = {seq: ident for seq, subject, _, ident in events if subject == "fault.orders.dlq"}
    assert len(dlq) == 400
    assert {seq: event for seq, event, _, _ in letters} == dlq
    assert query(private, "SELECT sum(count)::int FROM collector_deadletterrollup")[0][0] == 400
    overflowed = [note for seq, _, deliveries, note in letters if deliveries is None]
    assert len(overflowed) == 40 and all("'99999999999'" in note for note in overflowed)
    # The batch committed before the first kill really came back (and was stored once).
    assert observer(private, deliveries=True)[2] >= 4000 + committed
    last.send_signal(signal.SIGTERM)
    last.wait(30)
