"""Versions benchmark, on embedded servers of its own (under var/):

(1) server time of /versions/ and /versions/<type>/ (and their API twins) with the store as
    10 million events over 30 days of 2,000 types leave it: the versions tables (hourly and
    daily counts, producers, streams, shapes, consumers, instances, drift) and the per-minute
    event rollup of the last two days are generated in SQL at that scale; raw events are
    generated too, but fewer (`--raw-events`, default 500,000 small ones over the 30 days):
    the pages never read them. Median and max of 7 requests per URL.
(2) the collector's ingest rate with version learning on and off, in one run: the same
    backlog (`--messages` envelopes of ~1 KB, 200 types, 3 versions, a few shapes each) read
    by `manage.py collect` with every extension, then with every extension but versions,
    alternating `--rounds` times, each from an empty store under a fresh observer name.
    The raw nats-py read rate of the backlog is printed as the limit of the same run.

    .venv/bin/python bench/versions.py [--types 2000] [--events 10000000] [--days 30]
        [--raw-events 500000] [--messages 100000] [--rounds 2] [--skip-pages] [--skip-ingest]
"""
import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# --- (1) pages -----------------------------------------------------------------------------------

FILL = [
    # Types: 10% hot (traffic every hour), the rest every 6th hour; versions 1..3; 1-2 producers.
    """CREATE TEMP TABLE bench_series AS
       SELECT t, v::text AS version, 'svc' || (t %% 150) || (CASE WHEN p = 1 THEN '' ELSE '-legacy' END) AS producer,
              'svc' || (t %% 150) || '.entity' || t || '.changed' AS type,
              'svc' || (t %% 150) || '.entity' || t AS subject, t %% 10 = 0 AS hot
       FROM generate_series(1, %(types)s) t, generate_series(1, 3) v, generate_series(1, 2) p
       WHERE v <= 1 + t %% 3 AND (p = 1 OR v = 1)""",
    """CREATE TEMP TABLE bench_hours AS
       SELECT s.*, date_trunc('hour', now()) - h * interval '1 hour' AS bucket
       FROM bench_series s, generate_series(0, %(days)s * 24 - 1) h WHERE s.hot OR (h + s.t) %% 6 = 0""",
    """INSERT INTO collector_versionrollup (bucket, type, version, producer, subject, count, bytes, first_seen,
                                            last_seen)
       SELECT bucket, type, version, producer, subject, %(per_row)s, %(per_row)s * 900, bucket,
              bucket + interval '59 minutes' FROM bench_hours""",
    """INSERT INTO collector_versionrollupday (bucket, type, version, producer, subject, count, bytes)
       SELECT date_trunc('day', bucket), type, version, producer, subject, sum(count), sum(bytes)
       FROM collector_versionrollup GROUP BY 1, 2, 3, 4, 5""",
    """INSERT INTO collector_versionproducer (type, version, producer, first_seen, last_seen)
       SELECT type, version, producer, min(first_seen), max(last_seen) FROM collector_versionrollup GROUP BY 1, 2, 3""",
    """INSERT INTO collector_versionstream (broker_id, stream, subject, type, version, min_seq, max_seq, count,
                                            first_seen, last_seen)
       SELECT 1, 'S' || (t %% 150), subject, type, version, t * 1000 + version::int, t * 1000 + 900, 1000,
              now() - interval '30 days', now() FROM bench_series GROUP BY 1, 2, 3, 4, 5, t""",
    """INSERT INTO collector_versionshape (type, version, fingerprint, paths, count, first_seen, last_seen, example,
                                           example_event_id, example_ts, example_subject)
       SELECT type, version, md5(type || version || k), jsonb_build_object('', jsonb_build_array('object'),
              'id', jsonb_build_array('string'), 'amount', jsonb_build_array('number'),
              CASE WHEN version = '1' THEN 'item' ELSE 'sku' END, jsonb_build_array('string'),
              'opt' || k, jsonb_build_array('integer')),
              1000, now() - interval '30 days', now(),
              jsonb_build_object('id', 'x', 'amount', 1.5, 'opt' || k, k), 1, now() - interval '30 days', subject
       FROM (SELECT DISTINCT type, version, subject FROM bench_series) s, generate_series(1, 3) k""",
    """INSERT INTO collector_versionconsumer (type, version, consumer, processed, failed, dead_letters, first_processed,
                                              last_processed, stream)
       SELECT DISTINCT ON (type, version, c) type, version, 'worker' || ((t + c) %% 300), 1000, t %% 4, t %% 7 / 6,
              now() - interval '29 days', now(), 'S' || (t %% 150)
       FROM bench_series, generate_series(1, 2) c WHERE NOT (c = 2 AND t %% 5 = 0 AND version <> '1')""",
    """INSERT INTO collector_versioninstance (type, version, service, service_version, instance, count, first_seen,
                                              last_seen)
       SELECT type, version, producer, version || '.0.0', producer || '-' || i, 500, now() - interval '30 days', now()
       FROM bench_series, generate_series(1, 2) i""",
    """INSERT INTO collector_versiondrift (type, version, fingerprint, reasons, count, first_seen, last_seen,
                                           first_event_id, last_event_id, subject)
       SELECT DISTINCT type, version, 'drift', '[{"kind": "type", "path": "amount", "text": "amount is string"}]'::jsonb,
              3, now() - interval '2 hours', now() - interval '1 hour', 1, 2, subject
       FROM bench_series WHERE t %% 97 = 0""",
    # The per-minute event rollup, read by the type page's chart for windows up to 6 h: last two days.
    """INSERT INTO collector_eventrollup (minute, broker_id, subject, producer, type, version, count, bytes, errors)
       SELECT date_trunc('minute', bucket) + m * interval '1 minute', 1, subject, producer, type, version,
              1, 900, 0
       FROM bench_hours, generate_series(0, 59, 12) m WHERE bucket > now() - interval '2 days'""",
]


def fill_pages(cursor, types, events, days, raw_events):
    from datetime import UTC, datetime, timedelta

    from collector.partitions import midnight, partition_name

    started = time.perf_counter()
    cursor.execute("SET synchronous_commit TO off")
    cursor.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created) "
                   "VALUES ('nats', 'nats', 'nats://x', true, true, now()) ON CONFLICT DO NOTHING")
    # Rows per (hour, series) so that the total is `events`.
    cursor.execute(FILL[0], {"types": types})
    cursor.execute(FILL[1], {"days": days})
    cursor.execute("SELECT count(*) FROM bench_hours")
    hour_rows = cursor.fetchone()[0]
    per_row = max(1, -(-events // hour_rows))  # at least `events` in all
    for sql in FILL[2:]:
        cursor.execute(sql, {"per_row": per_row})
    today = datetime.now(UTC).date()
    for back in range(days + 1):
        day = today - timedelta(days=back)
        start = midnight(day)
        cursor.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {partition_name('collector_event', day)} PARTITION OF "
                       f"collector_event FOR VALUES FROM ('{start.isoformat()}') TO "
                       f"('{(start + timedelta(days=1)).isoformat()}')")
    cursor.execute(
        """INSERT INTO collector_event (ts, received_at, broker_id, subject, stream, seq, raw, size, truncated, format,
                                        event_id, type, version, producer, payload)
           SELECT now() - (n %% (%s * 86400)) * interval '1 second', now(), 1, 'svc1.entity' || (n %% %s), 'S1', n,
                  '\\x7b7d', 120, false, 'envelope', md5(n::text), 'svc1.entity' || (n %% %s) || '.changed', '1',
                  'svc1', jsonb_build_object('id', n, 'item', 'mug')
           FROM generate_series(1, %s) n""",
        [days, types, types, raw_events])
    cursor.execute("ANALYZE")
    counts = {}
    for table in ("collector_versionrollup", "collector_versionrollupday", "collector_versionproducer",
                  "collector_versionshape", "collector_versionconsumer", "collector_eventrollup", "collector_event"):
        cursor.execute(f"SELECT count(*) FROM {table}")
        counts[table] = cursor.fetchone()[0]
    cursor.execute("SELECT sum(count) FROM collector_versionrollup")
    represented = cursor.fetchone()[0]
    print(f"store: {types} types, {represented:,} events counted over {days} days; "
          + ", ".join(f"{t.removeprefix('collector_')} {n:,}" for t, n in counts.items())
          + f" (filled in {time.perf_counter() - started:.0f} s)", flush=True)
    cursor.execute("SELECT type FROM collector_versionproducer WHERE type LIKE 'svc10.%%' ORDER BY type LIMIT 1")
    return cursor.fetchone()[0]


def measure_pages(client, hot_type):
    urls = ["/versions/?last=1h", "/versions/?last=24h", "/versions/?last=7d", "/versions/?last=30d",
            "/versions/?last=30d&status=safe+to+retire", "/versions/?last=24h&producer=svc7",
            "/api/versions?last=30d",
            f"/versions/{hot_type}/?last=1h", f"/versions/{hot_type}/?last=6h", f"/versions/{hot_type}/?last=24h",
            f"/versions/{hot_type}/?last=30d", f"/api/versions/{hot_type}?last=30d"]
    if os.environ.get("BENCH_PROFILE"):  # cProfile of the month-long list
        import cProfile
        import pstats

        for url in urls[3:4]:
            client.get(url)
            profile = cProfile.Profile()
            profile.enable()
            client.get(url)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    worst = worst_cpu = 0.0
    pg = postgres_pids()
    for url in urls:
        client.get(url)
        times, cpus = [], []
        for _ in range(7):
            started, cpu = time.perf_counter(), time.process_time() + cpu_seconds(pg)
            response = client.get(url)
            times.append(time.perf_counter() - started)
            cpus.append(time.process_time() + cpu_seconds(pg) - cpu)
            assert response.status_code == 200, (url, response.status_code)
        worst, worst_cpu = max(worst, statistics.median(times)), max(worst_cpu, statistics.median(cpus))
        print(f"  {url:64} median {statistics.median(times) * 1000:6.0f} ms, max {max(times) * 1000:6.0f} ms; "
              f"CPU (web + PostgreSQL) {statistics.median(cpus) * 1000:4.0f} ms", flush=True)
    print(f"  slowest median {worst * 1000:.0f} ms (target < 300 ms); slowest CPU {worst_cpu * 1000:.0f} ms "
          f"(what a request costs on a machine nobody else is using)")


# --- (2) ingest with version learning on and off ------------------------------------------------


def payload(n, size):
    type_ = f"bench.entity{n % 200}.changed"
    version = 1 + (n // 200) % 3
    body = {"id": f"o-{n}", "customer": {"id": n % 977, "name": "Ada Lovelace"}, "lines": [{"sku": "mug", "qty": 1}]}
    if version >= 2:
        body["currency"] = "EUR"
    if n % 7 == 0:
        body["gift"] = True
    document = {"type": type_, "version": str(version), "timestamp": "2026-11-27T10:00:00Z", "body": body}
    body["note"] = "x" * max(size - len(json.dumps(document)) - 12, 0)
    return json.dumps(document).encode()


async def fill_bus(url, count, size):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    for n in range(count):
        await js.publish_async(f"bench.e{n % 200}", payload(n, size))
    await js.publish_async_completed()
    await nc.close()


async def raw_read(url, count):
    import nats
    from nats.js import api

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    await nc.jsm().add_consumer("BENCH", api.ConsumerConfig(
        durable_name="rawread", deliver_subject="_INBOX.rawread", deliver_group="rawread",
        ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20000, ack_wait=60))
    done, seen, started = asyncio.Event(), 0, time.perf_counter()

    async def on_message(msg):
        nonlocal seen
        await msg.ack()
        seen += 1
        if seen >= count:
            done.set()

    await nc.subscribe("_INBOX.rawread", queue="rawread", cb=on_message)
    await done.wait()
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


def ack_floor(url, consumer):
    import nats

    async def go():
        nc = await nats.connect(url)
        try:
            return (await nc.jsm().consumer_info("BENCH", consumer)).ack_floor.stream_seq
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(go())


COLLECT = """
import sys, django
django.setup()
from collector.ingest import extensions
from collector.versions import service
if sys.argv[1] == "off":
    extensions.INSTALLS = [i for i in extensions.INSTALLS if i is not service.install]
from django.core.management import call_command
call_command("collect")
"""


def cpu_seconds(pids):
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_pids():
    """This benchmark's PostgreSQL: its postmaster (its backends are its children)."""
    for found in Path(os.environ["BENCH_FOLDER"]).rglob("postmaster.pid"):
        return [int(found.read_text().splitlines()[0])]
    return []


def collect(env, count, learning, consumer):
    """`manage.py collect` (every extension, or all but versions) on the backlog under a
    fresh observer name: (msg/s, collector CPU us per message, PostgreSQL CPU us per message)
    from its first acked message to the last. CPU per message holds still on a busy machine
    where the rate does not."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE collector_event, collector_eventrollup, collector_topic, collector_versionrollup, "
                       "collector_versionrollupday, collector_versionproducer, collector_versionstream, "
                       "collector_versionshape, collector_versiondrift")
    process = subprocess.Popen([sys.executable, "-c", COLLECT, "on" if learning else "off"], cwd=ROOT,
                               env={**env, "EVENTSCOPE_CONSUMER": consumer}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    started = first = None
    try:
        while True:
            floor = ack_floor(env["NATS_URL"], consumer)
            if started is None and floor > 0:
                started, first = time.perf_counter(), floor
                pg = postgres_pids()
                cpu, pg_cpu = cpu_seconds([process.pid]), cpu_seconds(pg)
            if floor >= count:
                cpu, pg_cpu = cpu_seconds([process.pid]) - cpu, cpu_seconds(pg) - pg_cpu
                break
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-2000:])
            time.sleep(0.1)
        done = count - first
        return done / (time.perf_counter() - started), cpu / done * 1e6, pg_cpu / done * 1e6
    finally:
        process.terminate()
        process.wait(30)


def measure_ingest(env, messages, size, rounds):
    asyncio.run(fill_bus(env["NATS_URL"], messages, size))
    read = asyncio.run(raw_read(env["NATS_URL"], messages))
    print(f"backlog: {messages:,} envelopes of ~{size} bytes, 200 types x 3 versions")
    print(f"  limit: raw nats-py read + ack {read:,.0f} msg/s")
    runs = {True: [], False: []}
    for index in range(rounds):
        for learning in (False, True):
            rate, cpu, pg_cpu = collect(env, messages, learning, f"bench_{'on' if learning else 'off'}{index}")
            runs[learning].append((rate, cpu, pg_cpu))
            print(f"  collector, version learning {'on ' if learning else 'off'}: {rate:,.0f} msg/s; CPU per message: "
                  f"collector {cpu:.0f} us, PostgreSQL {pg_cpu:.0f} us", flush=True)
    on = [statistics.median(run[i] for run in runs[True]) for i in range(3)]
    off = [statistics.median(run[i] for run in runs[False]) for i in range(3)]
    print(f"  medians: on {on[0]:,.0f} msg/s, off {off[0]:,.0f} msg/s: rate {1 - on[0] / off[0]:+.1%} slower "
          f"(target < 10%)")
    print(f"  CPU per message, collector + PostgreSQL: on {on[1] + on[2]:.0f} us, off {off[1] + off[2]:.0f} us: "
          f"{(on[1] + on[2]) / (off[1] + off[2]) - 1:+.1%} (the rate a free machine would lose)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--types", type=int, default=2000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--raw-events", type=int, default=500_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "EVENTSCOPE_METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
           "ALLOWED_HOSTS": "testserver"}
    from runner.supervise import RECEIVER_PORTS

    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 21000, kind=kind))
    os.environ.update(env)
    os.environ["BENCH_FOLDER"] = str(folder)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client

        if not args.skip_pages:
            with connection.cursor() as cursor:
                hot = fill_pages(cursor, args.types, args.events, args.days, args.raw_events)
            User.objects.create_user("bench", password="bench", is_superuser=True)
            client = Client()
            client.force_login(User.objects.get(username="bench"))  # login() has no request for the throttle
            print("(1) page server time")
            measure_pages(client, hot)
        if not args.skip_ingest:
            print("(2) collector ingest with version learning on and off")
            measure_ingest(env, args.messages, args.size, args.rounds)
    finally:
        bus.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
