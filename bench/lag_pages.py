"""Consumer pages with many consumers: server time of /consumers/ and of one consumer's page
(and their API twins) with 15,000 consumers, on an embedded PostgreSQL of its own.

    .venv/bin/python bench/lag_pages.py [--consumers 15000] [--deep 60] [--interval 10] [--others-hours 0]

Every consumer has its latest figures (what the list sorts and filters). History, as the
sampler writes it at `--interval` seconds, for the `--deep` consumers the measured pages read
(the list's first page sorted by lag, the detail page's consumer): 24 h of raw samples and
30 days of per-minute and per-hour rollups. `--others-hours N` gives every other consumer N
hours of raw samples and hour rollups too (slow to fill: 15,000 × 24 h at 10 s is 130 M raw
rows). The pages only read the consumers they show, through (consumer, time) keys, so more
history for others deepens the indexes without changing the plans. Prints row counts, then
median and max of 7 requests per URL.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(cursor, consumers, deep, interval, others):
    cursor.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created) "
                   "VALUES ('nats', 'nats', 'nats://x', true, true, now()) RETURNING id")
    broker = cursor.fetchone()[0]
    # Lag is highest for the first consumers, so the list's first page (sorted by lag) is the deep ones.
    cursor.execute(
        """
        INSERT INTO collector_consumer (broker_id, stream, name, kind, observer, config, created_at, first_seen,
            last_seen, sampled_at, status, status_since, lag, pending, ack_pending, redelivered, waiting, oldest_age,
            consume_rate, produce_rate, drain_seconds, growing, note)
        SELECT %s, 'STREAM' || (n %% 150), 'svc' || n, 'jetstream', false,
               jsonb_build_object('durable', 'svc' || n, 'ack_policy', 'explicit', 'max_deliver', 5,
                                  'ack_wait_seconds', 30, 'filter_subjects', jsonb_build_array('s.' || n),
                                  'deliver_group', '', 'pull', true, 'deliver_policy', 'all'),
               now() - interval '40 days', now() - interval '40 days', now(), now(),
               (ARRAY['ok','lagging','stalled','growing','gone'])[1 + n %% 5], now() - interval '1 hour',
               %s - n, %s - n, n %% 50, n %% 7, 0, n %% 900, 10.0, 9.0, 120.0, n %% 3 = 0, ''
        FROM generate_series(1, %s) n
        """,
        [broker, consumers + 1000, consumers + 1000, consumers],
    )
    print(f"{consumers} consumers registered", flush=True)
    cursor.execute("SELECT min(id), max(id) FROM collector_consumer")
    low, high = cursor.fetchone()
    deep_high = low + deep - 1
    samples_per_hour = 3600 // interval
    started = time.perf_counter()
    cursor.execute("SET synchronous_commit TO off")
    # Bench data needs no crash safety: no WAL for the history tables.
    for table in ("collector_lagrollup", "collector_lagrolluphour"):
        cursor.execute(f"ALTER TABLE {table} SET UNLOGGED")
    cursor.execute("SELECT date_trunc('day', now() - interval '1 day'), date_trunc('day', now())")
    for day in cursor.fetchone():
        cursor.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS collector_lagsample_p{day:%Y%m%d} PARTITION OF "
                       f"collector_lagsample FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')")
    raw = hours = minutes = 0
    for first, last, raw_hours, rollup_hours in ((low, deep_high, 24, 30 * 24), (deep_high + 1, high, others, others)):
        if first > last or not raw_hours:
            continue
        cursor.execute(
            f"""
            INSERT INTO collector_lagsample (consumer_id, at, state, pending, ack_pending, redelivered, waiting,
                delivered_seq, ack_floor_seq, stream_first_seq, stream_last_seq, oldest_ts, oldest_source,
                consume_rate, produce_rate, drain_seconds, growing)
            SELECT c, now() - s * interval '{interval} seconds', 'read', (c * 7 + s) %% 1000, c %% 50, 0, 0,
                   1000 + s, 990 + s, 1, 2000, now() - s * interval '{interval} seconds' - interval '30 seconds',
                   'store', 10, 9, 60, false
            FROM generate_series(%s, %s) c, generate_series(0, %s) s
            """,
            [first, last, raw_hours * samples_per_hour - 1],
        )
        raw += cursor.rowcount
        cursor.execute(
            """
            INSERT INTO collector_lagrolluphour (consumer_id, hour, samples, unread, lag_sum, lag_max, lag_last,
                                                 ack_pending_max, redelivered_max, oldest_age_max)
            SELECT c, date_trunc('hour', now()) - h * interval '1 hour', %s, 0, 100 * %s, (c + h) %% 1000, 5, 3, 0, 60
            FROM generate_series(%s, %s) c, generate_series(0, %s) h
            """,
            [samples_per_hour, samples_per_hour, first, last, rollup_hours - 1],
        )
        hours += cursor.rowcount
        cursor.execute(
            """
            INSERT INTO collector_lagrollup (consumer_id, minute, samples, unread, lag_sum, lag_max, lag_last,
                                             ack_pending_max, redelivered_max, oldest_age_max)
            SELECT c, date_trunc('minute', now()) - m * interval '1 minute', %s, 0, 100, (c + m) %% 1000, 5, 3, 0, 60
            FROM generate_series(%s, %s) c, generate_series(0, %s) m
            """,
            [60 // interval, first, last, rollup_hours * 60 - 1],
        )
        minutes += cursor.rowcount
    cursor.execute("ANALYZE")
    print(f"{consumers} consumers; {raw:,} raw samples, {hours:,} hour rollups, {minutes:,} minute rollups "
          f"(filled in {time.perf_counter() - started:.0f} s)", flush=True)
    cursor.execute("SELECT stream, name FROM collector_consumer WHERE id = %s", [low])
    return cursor.fetchone()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--consumers", type=int, default=15_000)
    parser.add_argument("--deep", type=int, default=60)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--others-hours", type=int, default=0)
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    env = {"DATABASE_URL": pg.url, "SECRET_KEY": "bench", "DJANGO_SETTINGS_MODULE": "dashboard.settings",
           "ALLOWED_HOSTS": "testserver"}
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client

        with connection.cursor() as cursor:
            stream, name = fill(cursor, args.consumers, args.deep, args.interval, args.others_hours)
        User.objects.create_user("bench", password="bench", is_superuser=True)
        client = Client()
        client.login(username="bench", password="bench")
        urls = ["/consumers/?last=1h", "/consumers/?last=24h", "/consumers/?last=1h&sort=name",
                "/consumers/?last=1h&status=stalled&sort=oldest", "/api/consumers?last=1h",
                f"/consumers/{stream}/{name}/?last=1h", f"/consumers/{stream}/{name}/?last=24h",
                f"/consumers/{stream}/{name}/?last=30d", f"/api/consumers/{stream}/{name}?last=24h"]
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            for url in urls[:2]:
                client.get(url)
                profile = cProfile.Profile()
                profile.enable()
                client.get(url)
                profile.disable()
                print(url)
                pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        for url in urls:
            client.get(url)
            times = []
            for _ in range(7):
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (url, response.status_code)
            print(f"  {url:52} median {statistics.median(times) * 1000:6.0f} ms, max {max(times) * 1000:6.0f} ms",
                  flush=True)
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
