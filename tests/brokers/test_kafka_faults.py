"""kill -9 with Kafka: the real `manage.py collect` (KAFKA_BOOTSTRAP_SERVERS set) kills itself
between a batch's commit to the store and its offset commit (the fault point `after-commit`
of collector.ingest.faults). After a restart every record is stored once, and the rollup
counts each once."""
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from collector.brokers import kafka
from tests.brokers.test_kafka_tap import committed
from tests.conftest import kafka_produce, kafka_topics
from tests.ingest import test_reliability as reliability
from tests.ingest.test_faults import killed_by_its_fault_point, wait_for

pytestmark = pytest.mark.slow
private = reliability.private  # PostgreSQL and NATS of the test's own


def produce(bootstrap, topic, start, count):
    base = int(time.time() * 1000) - 600_000
    return kafka_produce(bootstrap, [(topic, f"key-{n % 7}".encode(), b'{"type": "t", "version": "1", "body": {"n": %d}}' % n,
                                      [("n", str(n).encode())], base + n) for n in range(start, start + count)])


def start(box, bootstrap, group, fault=None):
    env = {**box.env, "EVENTSCOPE_DECODE_WORKERS": "0", "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "EVENTSCOPE_CONSUMER": group}
    if fault:
        env["EVENTSCOPE_FAULT"] = fault
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=reliability.ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    box.collectors.append(process)
    return process


def query(box, sql, *params):
    with psycopg.connect(box.pg.url) as conn:
        return conn.execute(sql, params).fetchall()


def test_kill_9_between_commit_and_offset_commit_loses_and_doubles_nothing(private, kafka_bootstrap):
    topic, group = f"kill-{uuid.uuid4().hex[:8]}", f"eventscope{uuid.uuid4().hex[:6]}"
    kafka_topics(kafka_bootstrap, {topic: 3})
    sent = produce(kafka_bootstrap, topic, 0, 1500)
    first = start(private, kafka_bootstrap, group, fault="after-commit")
    assert killed_by_its_fault_point(first, timeout=90)
    # It died with a batch committed to the store and no offset committed to Kafka.
    stored = query(private, "SELECT count(*) FROM collector_event WHERE stream = %s", topic)[0][0]
    assert stored > 0
    assert all(offset < 0 for offset in committed(kafka_bootstrap, group, topic, 3).values())

    sent += produce(kafka_bootstrap, topic, 1500, 1000)
    ends = {}
    for meta in sent:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    last = start(private, kafka_bootstrap, group)
    wait_for(lambda: committed(kafka_bootstrap, group, topic, 3) == ends, 120, "every offset committed")

    seqs = [seq for (seq,) in query(private, "SELECT seq FROM collector_event WHERE stream = %s", topic)]
    assert sorted(seqs) == sorted(kafka.position(m.partition, m.offset) for m in sent)  # each once, none missing
    assert query(private, "SELECT sum(count)::int FROM collector_eventrollup WHERE subject = %s", topic)[0][0] == 2500
    assert query(private, "SELECT kind, url FROM collector_broker WHERE name = 'kafka'")[0] == (
        "kafka", f"kafka://{kafka_bootstrap}")
    last.terminate()
    last.wait(30)
