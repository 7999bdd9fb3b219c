"""Collector ingest benchmark: prints (a) the raw nats-py read rate of a backlog, (b) the
raw idempotent write rate of the same rows, (c) the collector end to end, the ratio
c / min(a, b), and the collector's peak resident memory.

    .venv/bin/python bench/collector_ingest.py [--messages 200000] [--size 1024] [--collectors N]

With --collectors N, N collector processes share the observer durable (its deliver group)
and drain the one backlog together; (c) is their sum and the memory the largest one's.

Runs on embedded servers of its own (under var/), so the figures of one run compare.
"""
import argparse
import asyncio
import json
import os
import shutil
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def payload(n, size):
    body = {"order_id": f"o-{n}", "customer": {"id": n % 977, "name": "Ada Lovelace"}, "items": []}
    pad = size - len(json.dumps({"type": "order.created", "version": "2", "timestamp": "2026-11-27T10:00:00Z",
                                 "body": body})) - 12
    body["note"] = "x" * max(pad, 0)
    return json.dumps({"type": "order.created", "version": "2", "timestamp": "2026-11-27T10:00:00Z",
                       "body": body}).encode()


async def fill(url, count, size):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    started = time.perf_counter()
    for n in range(count):
        await js.publish_async("bench.orders", payload(n, size),
                               headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    await js.publish_async_completed()
    await nc.close()
    return count / (time.perf_counter() - started)


async def raw_read(url, count):
    """(a) The same push consumer the collector uses, acking each message, storing nothing."""
    import nats
    from nats.js import api

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    await nc.jsm().add_consumer("BENCH", api.ConsumerConfig(
        durable_name="rawread", deliver_subject="_INBOX.rawread", deliver_group="rawread",
        ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20000, ack_wait=60))
    done = asyncio.Event()
    seen = 0

    async def on_message(msg):
        nonlocal seen
        seen += 1
        await nc.publish(msg.reply, b"")
        if seen >= count:
            done.set()

    started = time.perf_counter()
    await nc.subscribe("_INBOX.rawread", queue="rawread", cb=on_message, pending_msgs_limit=100_000,
                       pending_bytes_limit=64 * 1024 * 1024)
    await done.wait()
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


async def collect_rows(url, count):
    """The backlog as the collector would store it (decoded outside the timing)."""
    import nats

    from collector.brokers.nats import RawMessage
    from collector.ingest.service import Collector
    from collector.models import Broker
    from asgiref.sync import sync_to_async

    broker = await sync_to_async(lambda: Broker.objects.get_or_create(name="nats", defaults={"url": url})[0])()
    collector = Collector(broker)
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    sub = await nc.jetstream().subscribe("bench.>", ordered_consumer=True, pending_msgs_limit=300_000,
                                         pending_bytes_limit=512 * 1024 * 1024)
    rows = []
    from datetime import datetime, timezone

    while len(rows) < count:
        msg = await sub.next_msg(timeout=10)
        meta = msg.metadata
        now = datetime.now(timezone.utc)
        rows.append(collector.to_row(RawMessage(msg.subject, meta.stream, meta.sequence.stream, meta.timestamp,
                                                now, msg.headers, msg.data)))
    await nc.close()
    return rows


async def raw_write(rows, batch=2000):
    """(b) The store's idempotent write path (COPY into staging, INSERT ... ON CONFLICT, rollup), no decoding."""
    import psycopg

    from collector.events import writer as store
    from collector.partitions import EVENTS, Partitions
    from collector.db import conninfo

    async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
        await store.prepare(conn)
        partitions = Partitions(EVENTS)
        await partitions.ensure(conn, {row.ts.date() for row in rows})
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            await store.write_events(conn, rows[start:start + batch], partitions)
        elapsed = time.perf_counter() - started
        await conn.execute("TRUNCATE collector_event, collector_eventrollup, collector_topic")
        await conn.commit()
    return len(rows) / elapsed


def cpu_seconds(pids):
    """User + system CPU seconds of these processes so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def server_pids(root):
    """The process `root` and its children: this run's server only (the machine may run
    other PostgreSQL or NATS servers, which must not count)."""
    import psutil

    process = psutil.Process(root)
    return [process.pid] + [child.pid for child in process.children(recursive=True)]


def ack_floor(url):
    """The observer's ack floor: every message up to it is committed and acked."""
    import nats

    async def go():
        nc = await nats.connect(url)
        try:
            info = await nc.jsm().consumer_info("BENCH", "eventscope")
            return info.ack_floor.stream_seq
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(go())


def resident_kb(pid):
    """Resident memory of the collector and its decode workers together."""
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) // 1024


def collector_env(env, index):
    """The environment of collector number `index`: span receivers and metrics on ports of its own."""
    if index == 0:
        return env
    from runner import servers
    from runner.supervise import RECEIVER_PORTS

    own = dict(env)
    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            own[variable] = str(servers.free_port(default + 20000 + 100 * index, kind=kind))
    return own


def end_to_end(env, count, collectors=1, servers=None, without=""):
    """(c) `manage.py collect` (`collectors` processes sharing the observer durable) on the
    backlog until its ack floor reaches the end; the progress is read from the broker, so
    the measuring does not load the database."""
    command = [sys.executable, "bench/collect_without.py", without] if without else [sys.executable, "manage.py", "collect"]
    processes = [subprocess.Popen(command, cwd=ROOT, env=collector_env(env, i),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(collectors)]
    process = processes[0]
    if os.environ.get("BENCH_PROFILE"):
        # py-spy samples the collector while it drains the backlog (pip install py-spy); --gil:
        # only the thread holding the interpreter lock, which is where its CPU goes.
        subprocess.Popen(["py-spy", "record", "--gil", "-d", "20", "-r", "100", "-f", "raw", "-o", os.environ["BENCH_PROFILE"],
                          "--pid", str(process.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    started = None
    try:
        while True:
            peak = max(peak, max(resident_kb(p.pid) for p in processes))
            floor = ack_floor(env["NATS_URL"])
            if started is None and floor > 0:
                started, first = time.perf_counter(), floor
                import psutil

                workers = [c.pid for p in processes for c in psutil.Process(p.pid).children(recursive=True)]
                watched = {"collector": [p.pid for p in processes], "decode worker": workers,
                           "postgres": server_pids(servers["postgres"]), "nats-server": server_pids(servers["nats-server"])}
                cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
            if floor >= count:
                break
            for p in processes:
                if p.poll() is not None:
                    raise RuntimeError(p.stderr.read().decode()[-2000:])
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        for name, pids in watched.items():
            used = cpu_seconds(pids) - cpu_before[name]
            print(f"    CPU during (c): {name:13} {used:6.2f} s = {used / elapsed:4.0%} of a core, "
                  f"{used / (count - first) * 1e6:6.0f} us per message")
        return (count - first) / elapsed, peak / 1024
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--collectors", type=int, default=1,
                        help="collector processes sharing the observer durable on the one backlog")
    parser.add_argument("--without", default="",
                        help="extensions left out of the collector, e.g. versions,topology (their cost)")
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "EVENTSCOPE_METRICS_PORT": "0", "LOG_LEVEL": "WARNING"}
    from runner.supervise import RECEIVER_PORTS

    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 20000, kind=kind))
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        print(f"backlog: {args.messages} messages of ~{args.size} bytes; load average {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} cores")
        print(f"  publish (js.publish_async): {asyncio.run(fill(bus.url, args.messages, args.size)):,.0f} msg/s")
        read = asyncio.run(raw_read(bus.url, args.messages))
        print(f"(a) raw nats-py read + ack, push consumer: {read:,.0f} msg/s")
        rows = asyncio.run(collect_rows(bus.url, args.messages))
        write = asyncio.run(raw_write(rows))
        del rows
        print(f"(b) raw idempotent write (COPY -> INSERT ON CONFLICT + rollup): {write:,.0f} rows/s")
        collector, rss = end_to_end(env, args.messages, args.collectors,
                                    {"postgres": pg.process.pid, "nats-server": bus.process.pid}, args.without)
        without = f", without {args.without}" if args.without else ", every extension on"
        print(f"(c) collector end to end (backlog -> committed -> acked), {args.collectors} collector(s){without}: "
              f"{collector:,.0f} msg/s")
        print(f"    ratio c / min(a, b) = {collector / min(read, write):.0%} (target >= 70%)")
        print(f"    collector peak resident memory, with its decode worker: {rss:,.0f} MB (target < 300 MB)")
        print(f"    load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        bus.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
