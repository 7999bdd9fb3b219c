"""RabbitMQ ingest benchmark: prints (a) the raw aio-pika read + ack rate of a backlog in a
quorum queue like the tap, (b) the raw idempotent write rate of the same rows, (c) the
collector end to end from its tap queue, and the ratio c / min(a, b).

    .venv/bin/python bench/rabbitmq_ingest.py [--messages 100000] [--size 1024]

Uses the machine's RabbitMQ (RABBITMQ_URL, default amqp://guest:guest@127.0.0.1:5672, with
its management plugin) in a vhost of its own, deleted at the end, and embedded PostgreSQL
and NATS of its own (under var/). The tap is fed by bindings (RABBITMQ_FIREHOSE=false), so
the backlog can be put in it before the collector starts.
"""
import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from base64 import b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector_ingest import cpu_seconds, payload, raw_write, resident_kb, server_pids

AMQP = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672").rstrip("/")
MANAGEMENT = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
TAP_ARGS = {"x-queue-type": "quorum", "x-max-length-bytes": 512 * 1024 * 1024, "x-overflow": "drop-head"}


def api(method, path, body=None):
    request = urllib.request.Request(MANAGEMENT + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Basic " + b64encode(b"guest:guest").decode(),
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


async def fill(url, count, size):
    """The backlog into two quorum queues bound to one exchange: the tap's, and one for (a)."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.declare_exchange("bench", "topic", durable=True)
        for name in ("eventscope.tap", "rawread", "rawread-multiple"):
            queue = await channel.declare_queue(name, durable=True, arguments=TAP_ARGS)
            await queue.bind(exchange, "#")
        started = time.perf_counter()
        for n in range(count):
            await exchange.publish(aio_pika.Message(payload(n, size), message_id=f"m-{n}", headers={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}), "bench.orders")
        while (await channel.declare_queue("rawread", passive=True)).declaration_result.message_count < count:
            await asyncio.sleep(0.1)
        return count / (time.perf_counter() - started)


async def raw_read(url, count, queue_name="rawread", every=1):
    """(a) aio-pika consuming with the tap's largest prefetch, storing nothing, acking each message
    (`every` 1) or with one `multiple` ack every `every` messages, as the collector acks."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10_000)
        queue = await channel.get_queue(queue_name)
        seen = 0
        started = time.perf_counter()
        async with queue.iterator() as messages:
            async for message in messages:
                seen += 1
                if seen % every == 0 or seen >= count:
                    await message.ack(multiple=every > 1)
                if seen >= count:
                    break
        return count / (time.perf_counter() - started)


def rows_of(count, size):
    """The backlog as the collector stores it (decoded outside the timing)."""
    from datetime import UTC, datetime

    from collector.brokers.rabbitmq import to_raw
    from collector.ingest.service import Collector, load_configuration

    collector = Collector(load_configuration()[0])
    now = datetime.now(UTC)
    return [collector.to_row(to_raw("bench", "bench.orders", {}, {"message_id": f"m-{n}"}, payload(n, size), now))
            for n in range(count)]


async def tap_ready(url):
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        return (await channel.declare_queue("eventscope.tap", passive=True)).declaration_result.message_count


def stored(env):
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM collector_event e JOIN collector_broker b ON b.id = e.broker_id "
                            "WHERE b.kind = 'rabbitmq'").fetchone()[0]


def end_to_end(env, url, count):
    """(c) `manage.py collect` on the tap's backlog until every message is committed; the
    queue's ready count (AMQP, exact) shows the start, the database the end."""
    process = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, started = 0, None
    try:
        while True:
            peak = max(peak, resident_kb(process.pid))
            ready = asyncio.run(tap_ready(url))
            if started is None and ready < count:
                started = time.perf_counter()
                # (PostgreSQL left out: other embedded servers on the machine share its process name.)
                watched = {"collector": [process.pid], "beam.smp": server_pids({"beam.smp"})}
                cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
            if started is not None and ready == 0 and stored(env) >= count:
                break
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-2000:])
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        for name, pids in watched.items():
            used = cpu_seconds(pids) - cpu_before[name]
            print(f"    CPU during (c): {name:12} {used:6.2f} s = {used / elapsed:4.0%} of a core, "
                  f"{used / count * 1e6:6.0f} us per message" + (" (all RabbitMQ nodes)" if name == "beam.smp" else ""))
        return count / elapsed, peak / 1024
    finally:
        process.terminate()
        process.wait(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    from runner import servers

    vhost = f"bench-{uuid.uuid4().hex[:8]}"
    api("PUT", f"/api/vhosts/{vhost}", {})
    api("PUT", f"/api/permissions/{vhost}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    url = f"{AMQP}/{vhost}"
    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "EVENTSCOPE_METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
           "RABBITMQ_URL": url, "RABBITMQ_MANAGEMENT_URL": MANAGEMENT, "RABBITMQ_FIREHOSE": "false"}
    from runner.supervise import RECEIVER_PORTS

    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 20000, kind=kind))
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        print(f"backlog: {args.messages} messages of ~{args.size} bytes, RabbitMQ vhost {vhost}")
        print(f"  publish (aio-pika, no confirms, two quorum queues): "
              f"{asyncio.run(fill(url, args.messages, args.size)):,.0f} msg/s")
        single = asyncio.run(raw_read(url, args.messages))
        print(f"    raw aio-pika read + one ack per message, prefetch 10,000, quorum queue: {single:,.0f} msg/s")
        read = asyncio.run(raw_read(url, args.messages, "rawread-multiple", 500))
        print(f"(a) raw aio-pika read + a multiple ack every 500 messages, prefetch 10,000: {read:,.0f} msg/s")
        read = max(read, single)
        write = asyncio.run(raw_write(rows_of(args.messages, args.size)))
        print(f"(b) raw idempotent write (COPY -> INSERT ON CONFLICT + rollup): {write:,.0f} rows/s")
        collector, rss = end_to_end(env, url, args.messages)
        print(f"(c) collector end to end (tap backlog -> committed -> acked): {collector:,.0f} msg/s")
        print(f"    ratio c / min(a, b) = {collector / min(read, write):.0%}")
        print(f"    collector peak resident memory, with its decode worker: {rss:,.0f} MB")
    finally:
        bus.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
        api("DELETE", f"/api/vhosts/{vhost}")


if __name__ == "__main__":
    main()
