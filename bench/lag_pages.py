"""Consumer pages with many consumers: server time of /consumers/ and of one consumer's page
(and their API twins) with 15,000 consumers, on an embedded PostgreSQL of its own.

    .venv/bin/python bench/lag_pages.py [--consumers 15000] [--deep 60] [--interval 10]

History, as the sampler writes it at `--interval` seconds:
- every consumer: the last hour of raw samples and 30 days of per-hour rollups;
- the `--deep` consumers the measured pages read (the first page of the list, the detail
  page's consumer): 24 h of raw samples and 30 days of per-minute rollups as well.
The pages only ever read the consumers they show, through the (consumer, time) keys, so
these are the rows they touch; the full 24 h × 15,000 raw samples (130 M rows at 10 s) would
change the index depth, not the plans. Prints row counts, then median and max of 7 requests.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(cursor, consumers, deep, interval):
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
    cursor.execute("SELECT min(id), max(id) FROM collector_consumer")
    low, high = cursor.fetchone()
    deep_high = low + deep - 1
    samples_per_hour = 3600 // interval
    started = time.perf_counter()
    cursor.execute("SELECT date_trunc('day', now() - interval '1 day'), date_trunc('day', now())")
    for day in cursor.fetchone():
        cursor.execute(f"CREATE TABLE IF NOT EXISTS collector_lagsample_p{day:%Y%m%d} PARTITION OF collector_lagsample "
                       f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + __import__('datetime').timedelta(days=1)).isoformat()}')")
    cursor.execute(
        f"""
        INSERT INTO collector_lagsample (consumer_id, at, state, pending, ack_pending, redelivered, waiting,
            delivered_seq, ack_floor_seq, stream_first_seq, stream_last_seq, oldest_ts, oldest_source,
            consume_rate, produce_rate, drain_seconds, growing)
        SELECT c, now() - s * interval '{interval} seconds', 'read', (c * 7 + s) %% 1000, c %% 50, 0, 0,
               1000 + s, 990 + s, 1, 2000, now() - s * interval '{interval} seconds' - interval '30 seconds', 'store',
               10, 9, 60, false
        FROM generate_series(%s, %s) c,
             generate_series(0, CASE WHEN c <= %s THEN %s ELSE %s END) s
        """,
        [low, high, deep_high, 24 * samples_per_hour - 1, samples_per_hour - 1],
    )
    raw = cursor.rowcount
    cursor.execute(
        """
        INSERT INTO collector_lagrolluphour (consumer_id, hour, samples, unread, lag_sum, lag_max, lag_last,
                                             ack_pending_max, redelivered_max, oldest_age_max)
        SELECT c, date_trunc('hour', now()) - h * interval '1 hour', %s, 0, 100 * %s, (c + h) %% 1000, 5, 3, 0, 60
        FROM generate_series(%s, %s) c, generate_series(0, 30 * 24 - 1) h
        """,
        [samples_per_hour, samples_per_hour, low, high],
    )
    hours = cursor.rowcount
    cursor.execute(
        """
        INSERT INTO collector_lagrollup (consumer_id, minute, samples, unread, lag_sum, lag_max, lag_last,
                                         ack_pending_max, redelivered_max, oldest_age_max)
        SELECT c, date_trunc('minute', now()) - m * interval '1 minute', %s, 0, 100, (c + m) %% 1000, 5, 3, 0, 60
        FROM generate_series(%s, %s) c, generate_series(0, 30 * 1440 - 1) m
        """,
        [60 // interval, low, deep_high],
    )
    minutes = cursor.rowcount
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
            stream, name = fill(cursor, args.consumers, args.deep, args.interval)
        User.objects.create_user("bench", password="bench", is_superuser=True)
        client = Client()
        client.login(username="bench", password="bench")
        urls = ["/consumers/?last=1h", "/consumers/?last=24h", "/consumers/?last=1h&sort=name",
                "/consumers/?last=1h&status=stalled&sort=oldest", "/api/consumers?last=1h",
                f"/consumers/{stream}/{name}/?last=1h", f"/consumers/{stream}/{name}/?last=24h",
                f"/consumers/{stream}/{name}/?last=30d", f"/api/consumers/{stream}/{name}?last=24h"]
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
