"""List pages at scale: server time (Django test client, in this process) of the overview,
/topics/ in each sort, /api/topics, a topic's event list with each filter, and /dlq/, over
10 million stored events and a million dead letters.

    .venv/bin/python bench/pages.py [--events 10000000] [--dead-letters 1000000] [--folder var/bench-pages]

What is real and what is generated: the rows are generated in SQL (generate_series) straight
into the day-partitioned events table, not sent through a broker and the collector; the
per-minute and hourly rollups and the topic list are then built from those rows with the same
grouping the events writer uses (so they agree with the events exactly), and the dead-letter
rollups from the dead letters the same way. The pages, readers, indexes and queries are the
real ones. Events: spread evenly over the last 48 hours, on --topics topics with a skewed
share (topic = floor(topics * random()^3): a few hot topics, a long tail), one producer, type
and version per topic, ~130-byte JSON payloads with a `region` header; one in 1,000 has a note
(an error). The database runs with fsync off (a benchmark folder, not an install).
With --folder the data is kept and reused by the next run (its times shift with `now`).
"""
import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPAN_HOURS = 48


def generate(cursor, events, topics, dead_letters):
    started = time.perf_counter()
    cursor.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created, exchanges) "
                   "VALUES ('nats', 'nats', 'nats://x', true, true, now(), '') RETURNING id")
    broker = cursor.fetchone()[0]
    cursor.execute("SELECT date_trunc('day', now() - %s * interval '1 hour')::date, now()::date", [SPAN_HOURS])
    first, last = cursor.fetchone()
    cursor.execute("SELECT d::date FROM generate_series(%s::date, %s::date, interval '1 day') d", [first, last])
    for (day,) in cursor.fetchall():
        cursor.execute(f"CREATE TABLE collector_event_p{day:%Y%m%d} PARTITION OF collector_event "
                       f"FOR VALUES FROM ('{day}T00:00:00+00:00') TO ('{day}T00:00:00+00:00'::timestamptz + interval '1 day')")
    cursor.execute("SELECT setseed(0.17)")
    chunk = 1_000_000
    for low in range(1, events + 1, chunk):
        high = min(low + chunk - 1, events)
        cursor.execute(
            """
            INSERT INTO collector_event (ts, received_at, broker_id, subject, stream, seq, headers, raw, size,
                                         truncated, format, type, version, producer, payload, note)
            SELECT ts, ts, %(broker)s, 'svc' || (t %% 100) || '.topic.' || t, 'S', n,
                   jsonb_build_object('Micro-From-Service', 'svc' || (t %% 100), 'region',
                                      CASE n %% 3 WHEN 0 THEN 'us' ELSE 'eu' END),
                   convert_to(body::text, 'UTF8'), octet_length(body::text), false, 'json',
                   'type' || (t %% 7), ((t / 7) %% 2 + 1)::text, 'svc' || (t %% 100), body,
                   CASE WHEN n %% 1000 = 0 THEN 'bench: an error' END
            FROM (SELECT n, now() - (%(events)s - n) * (%(hours)s * interval '1 hour' / %(events)s) AS ts,
                         floor(%(topics)s * power(random(), 3))::int AS t,
                         jsonb_build_object('type', 'order.created', 'customer', jsonb_build_object('id', n %% 100000),
                                            'note', 'a payload of about one hundred and thirty bytes') AS body
                  FROM generate_series(%(low)s, %(high)s) n) g
            """,
            {"broker": broker, "events": events, "hours": SPAN_HOURS, "topics": topics, "low": low, "high": high},
        )
        cursor.connection.commit()
        print(f"  events {high:>10,} ({time.perf_counter() - started:.0f} s)", flush=True)
    # The rollups and the topic list from those rows, grouped as the events writer groups them, and
    # in time order as the writer adds them (rows of one minute share pages).
    cursor.execute(
        """
        INSERT INTO collector_eventrollup (minute, broker_id, subject, producer, type, version, count, bytes, errors)
        SELECT date_trunc('minute', ts), broker_id, subject, coalesce(producer, ''), coalesce(type, ''),
               coalesce(version, ''), count(*), sum(size), count(*) FILTER (WHERE note IS NOT NULL)
        FROM collector_event GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1
        """)
    cursor.execute(
        """
        INSERT INTO collector_eventhourrollup (hour, broker_id, subject, producer, type, version, count, bytes, errors)
        SELECT date_trunc('hour', minute), broker_id, subject, producer, type, version, sum(count), sum(bytes),
               sum(errors)
        FROM collector_eventrollup GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1
        """)
    cursor.execute(
        """
        INSERT INTO collector_topic (broker_id, name, stream, best_effort, first_seen, last_seen)
        SELECT broker_id, subject, 'S', false, min(minute), max(minute) + interval '59 seconds'
        FROM collector_eventrollup GROUP BY 1, 2
        """)
    print(f"  rollups and topics ({time.perf_counter() - started:.0f} s)", flush=True)
    cursor.execute(
        """
        INSERT INTO collector_deadletter (key, broker_id, reason, subject, dlq_subject, stream, consumer, stream_seq,
                                          headers, raw, size, error, note, deliveries, trace_id, span_id,
                                          first_seen, last_seen, status, attempt, status_reason, updated)
        SELECT 'bench:' || n, %(broker)s, (ARRAY['max_deliveries', 'terminated', 'dlq_subject'])[1 + n %% 3],
               'svc' || (n %% 100) || '.topic.' || (n %% 500), '', 'S', 'worker' || (n %% 20), n,
               '{"region": "eu"}', convert_to('{"customer": {"id": ' || n || '}}', 'UTF8'), 30, 'gave up', '', 5,
               '', '', now() - n * (%(hours)s * interval '1 hour' / %(count)s),
               now() - n * (%(hours)s * interval '1 hour' / %(count)s),
               (ARRAY['new', 'new', 'new', 'retried', 'resolved'])[1 + n %% 5], 0, '', now()
        FROM generate_series(1, %(count)s) n
        """, {"broker": broker, "hours": SPAN_HOURS, "count": dead_letters})
    cursor.execute(
        """
        INSERT INTO collector_deadletterrollup (minute, subject, consumer, reason, count)
        SELECT date_trunc('minute', first_seen), subject, consumer, reason, count(*)
        FROM collector_deadletter GROUP BY 1, 2, 3, 4 ORDER BY 1
        """)
    cursor.execute(
        """
        INSERT INTO collector_deadletterhourrollup (hour, subject, consumer, reason, count)
        SELECT date_trunc('hour', minute), subject, consumer, reason, sum(count)
        FROM collector_deadletterrollup GROUP BY 1, 2, 3, 4 ORDER BY 1
        """)
    cursor.connection.commit()
    print(f"  dead letters ({time.perf_counter() - started:.0f} s)", flush=True)


def measure(client, url, runs):
    first = client.get(url)
    assert first.status_code == 200, (url, first.status_code, first.content[:300])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - started)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times) * 1000, p95 * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--dead-letters", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--folder", help="keep the database here and reuse it in the next run")
    parser.add_argument("--only", help="measure only the URLs containing this text")
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(args.folder).resolve() if args.folder else ROOT / "var" / f"bench-pages-{os.getpid()}"
    pg = servers.Postgres(folder / "postgres", durable=False).start()
    os.environ.update({"DATABASE_URL": pg.url, "SECRET_KEY": secrets.token_urlsafe(50),
                       "DJANGO_SETTINGS_MODULE": "dashboard.settings", "ALLOWED_HOSTS": "testserver"})
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM collector_broker")
            if not cursor.fetchone()[0]:
                print(f"generating {args.events:,} events, {args.dead_letters:,} dead letters", flush=True)
                generate(cursor, args.events, args.topics, args.dead_letters)
                connection.connection.autocommit = True
                cursor.execute("VACUUM ANALYZE")
            for table in ("collector_event", "collector_eventrollup", "collector_eventhourrollup", "collector_topic",
                          "collector_deadletter", "collector_deadletterrollup", "collector_deadletterhourrollup"):
                cursor.execute(f"SELECT count(*) FROM {table}")
                print(f"  {table:28} {cursor.fetchone()[0]:>12,} rows")
            cursor.execute("SELECT subject, count(*) FROM collector_event WHERE ts > now() - interval '1 hour' "
                           "GROUP BY 1 ORDER BY 2 DESC LIMIT 1")
            hot, hot_hour = cursor.fetchone()
        user = User.objects.filter(username="bench").first() or User.objects.create_user(
            "bench", password="bench", is_superuser=True)
        client = Client()
        client.force_login(user)
        topic = f"/topics/{hot}/"
        urls = ["/?last=24h", "/?last=1h"]
        urls += [f"/topics/?last=24h&sort={sort}" for sort in ("count", "name", "bytes", "errors", "last_seen")]
        urls += ["/topics/?last=1h&sort=count", "/api/topics?last=24h", "/api/topics?last=24h&sort=name"]
        urls += [topic + "?last=1h", topic + "?last=24h"]
        for query in ({"header": "region=eu"}, {"header": "region=nowhere"}, {"path": "customer.id", "equals": "7"},
                      {"contains": '"id": 7}'}, {"contains": "no such text"}):
            urls.append(topic + "?" + urlencode({"last": "1h", **query}))
        # The longest window the scanning filters accept (EVENT_SCAN_WINDOW_HOURS), matching nothing: every row read.
        from django.conf import settings

        scan_hours = settings.EVENT_SCAN_WINDOW_HOURS
        for query in ({"header": "region=nowhere"}, {"path": "customer.id", "equals": "-1"}, {"contains": "no such"}):
            urls.append(topic + "?" + urlencode({"last": f"{scan_hours}h", **query}))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM collector_event "
                           "WHERE subject = %s AND ts > now() - %s * interval '1 hour'",
                           [hot, scan_hours])
            print(f"hot topic: {cursor.fetchone()[0]:,} events in the scan window ({scan_hours} h)")
            # Raw limits of this run (the machine's load moves every figure): the floor of an exact
            # traffic sort (every hourly row of 24 h summed, no grouping) and of a scan (the hot
            # topic's rows of the scan window read, no filter).
            for label, sql, params in (
                    ("sum of the 24 h hourly rollup rows", ("SELECT sum(count) FROM collector_eventhourrollup "
                     "WHERE hour >= date_trunc('hour', now()) - interval '23 hours'"), []),
                    (f"read of the hot topic's {scan_hours} h rows",
                     ("SELECT sum(octet_length(raw)) FROM collector_event "
                     "WHERE subject = %s AND ts > now() - %s * interval '1 hour'"), [hot, scan_hours])):
                times = []
                for _ in range(5):
                    started = time.perf_counter()
                    cursor.execute(sql, params)
                    cursor.fetchone()
                    times.append((time.perf_counter() - started) * 1000)
                print(f"raw limit: {label}: median {statistics.median(times):.0f} ms")
        urls += ["/dlq/?last=24h", "/dlq/?last=7d"]
        print(f"hot topic {hot}: {hot_hour:,} events in the last hour; {args.runs} requests each")
        for url in urls:
            if args.only and args.only not in url:
                continue
            median, p95 = measure(client, url, args.runs)
            print(f"  {url:78} median {median:6.0f} ms  p95 {p95:6.0f} ms", flush=True)
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")
    finally:
        pg.stop()
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
