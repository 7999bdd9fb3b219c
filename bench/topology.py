"""Topology benchmark: `/api/topology` with 500 services over rollups standing for about 10
million stored events, and the time Chromium takes to draw the graph, collapsed by namespace
and fully expanded. On an embedded PostgreSQL of its own.

    .venv/bin/python bench/topology.py [--services 500] [--raw 1000000] [--requests 30]

What it stores, in SQL: 500 services in 25 namespaces, each publishing 2 topics (1,000
topics, one stream per service), each topic read by 2 consumer groups (2,000 consumers);
the events' per-minute rollup for 24 hours over every topic (1.44 million rows whose counts
add up to about 10 million events); span edges (1,000 calls, 500 publishes, 1,000 consumes)
and the RED rollup per minute for the last 2 hours; 1,000 registered instances. Raw events
actually stored: `--raw` (default 1,000,000, small bodies): the graph never reads them.

Prints /api/topology p50/p95 (1 h window with the comparison to the hour before, without
it, and 24 h), beside the raw limit measured in the same run: the source queries alone,
without building or encoding the graph. Then, in Chromium (Debian's), the time from
navigation to a drawn graph (collapsed) and from ticking "expand all" to the redrawn graph.
"""
import argparse
import importlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKETS = 19


def populate(cursor, services, raw):
    from collector.partitions import midnight, partition_name

    cursor.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created) "
                   "VALUES ('nats', 'nats', 'nats://x', true, true, now()) RETURNING id")
    broker = cursor.fetchone()[0]
    svc = "'ns' || (s %% 25) || '.svc' || s"
    cursor.execute(
        f"INSERT INTO collector_topic (broker_id, name, stream, best_effort, first_seen, last_seen) "
        f"SELECT %s, {svc} || '.evt' || j, 'S' || s, false, now() - interval '1 day', now() "
        f"FROM generate_series(0, %s - 1) s, generate_series(0, 1) j", [broker, services])
    started = time.perf_counter()
    cursor.execute(
        f"INSERT INTO collector_eventrollup (minute, broker_id, subject, producer, type, version, count, bytes, errors) "
        f"SELECT date_trunc('minute', now()) - m * interval '1 minute', %s, {svc} || '.evt' || j, {svc}, "
        f"'evt' || j, '1', 6 + (s + m) %% 2, 700 * (6 + (s + m) %% 2), ((s * m) %% 97 = 0)::int "
        f"FROM generate_series(0, %s - 1) s, generate_series(0, 1) j, generate_series(0, 1439) m", [broker, services])
    # The coarse publish rows beside it, as the migration fills them from the per-minute rollup.
    cursor.execute(importlib.import_module("collector.migrations.0012_topology").PUBLISH_FROM_EVENTS)
    cursor.execute("SELECT count(*), sum(count) FROM collector_eventrollup")
    rollup_rows, events = cursor.fetchone()
    print(f"event rollup: {rollup_rows:,} rows standing for {events:,} events "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    # Two groups per topic: the services i+1 and i+7 (a durable each: broadcast).
    cursor.execute(
        f"INSERT INTO collector_consumer (broker_id, stream, name, kind, observer, config, first_seen, last_seen, status, "
        f"lag, growing, note) "
        f"SELECT %s, 'S' || s, 'ns' || ((s + d) %% %s %% 25) || '.svc' || ((s + d) %% %s) || '-' || j, 'jetstream', "
        f"false, jsonb_build_object('durable', 'ns' || ((s + d) %% %s %% 25) || '.svc' || ((s + d) %% %s), "
        f"'filter_subjects', jsonb_build_array({svc} || '.evt' || j), 'pull', true), "
        f"now() - interval '2 days', now(), CASE WHEN s %% 50 = 0 THEN 'lagging' ELSE 'ok' END, s %% 13, false, '' "
        f"FROM generate_series(0, %s - 1) s, generate_series(0, 1) j, (VALUES (1), (7)) AS g(d)",
        [broker, services, services, services, services, services])
    zeros = "ARRAY[" + ", ".join(["0"] * (BUCKETS - 3)) + ", 40, 15, 5]::bigint[]"
    other = f"'ns' || ((s + d) %% {services} %% 25) || '.svc' || ((s + d) %% {services})"
    started = time.perf_counter()
    for kind, source, target, group, extra in (
            ("call", svc, other, "''", "(VALUES (3), (11)) AS g(d)"),
            ("publish", svc, f"{svc} || '.evt0'", "''", "(VALUES (0)) AS g(d)"),
            ("consume", f"{svc} || '.evt' || (d %% 2)", other, other, "(VALUES (1), (7)) AS g(d)")):
        cursor.execute(
            f"INSERT INTO collector_topologyedgerollup (width, minute, kind, source, target, \"group\", count, errors, "
            f"duration_sum_us, buckets) "
            f"SELECT 1, date_trunc('minute', now()) - m * interval '1 minute', '{kind}', {source}, {target}, {group}, "
            f"60, (s + m) %% 3, 60 * 2000, {zeros} "
            f"FROM generate_series(0, %s - 1) s, generate_series(0, 119) m, {extra}", [services])
    # The span pass keeps each edge per 5 and 15 minutes and per hour too.
    for width in (5, 15, 60):
        cursor.execute(
            f"INSERT INTO collector_topologyedgerollup (width, minute, kind, source, target, \"group\", count, errors, "
            f"duration_sum_us, buckets) "
            f"SELECT {width}, date_bin(interval '{width} minutes', minute, TIMESTAMPTZ '2000-01-01 00:00+00') AS m, kind, "
            f"source, target, \"group\", sum(count), sum(errors), sum(duration_sum_us), {zeros} "
            f"FROM collector_topologyedgerollup WHERE width = 1 GROUP BY 2, 3, 4, 5, 6")
    cursor.execute(
        f"INSERT INTO collector_spanrollup (minute, service, operation, count, errors, duration_sum_us, buckets) "
        f"SELECT date_trunc('minute', now()) - m * interval '1 minute', {svc}, 'op' || o, 60, (s + m) %% 3, 120000, "
        f"{zeros} FROM generate_series(0, %s - 1) s, generate_series(0, 119) m, generate_series(0, 1) o", [services])
    cursor.execute(
        f"INSERT INTO collector_serviceinstance (service, version, node, address, instances, first_seen, last_seen) "
        f"SELECT {svc}, '1.' || (s %% 3), 'node-' || n, '', 1, now() - interval '3 hours', now() "
        f"FROM generate_series(0, %s - 1) s, generate_series(0, 1) n", [services])
    print(f"span edges, RED rollup, consumers, instances: {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    today = datetime.now(UTC).date()
    for day in (today - timedelta(days=1), today):
        start = midnight(day)
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {partition_name('collector_event', day)} PARTITION OF collector_event "
                       f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')")
    if raw:
        cursor.execute(
            "INSERT INTO collector_event (ts, received_at, broker_id, subject, stream, seq, raw, size, format, producer, "
            "type, version) "
            "SELECT now() - (n %% 86000) * interval '1 second', now(), %s, 'ns' || (x %% 25) || '.svc' || x || '.evt0', "
            "'S' || x, n, '\\x7b7d'::bytea, 2, 'raw', 'p', 'evt0', '1' "
            "FROM (SELECT n, n %% %s AS x FROM generate_series(1, %s) n) g",
            [broker, services, raw])
        print(f"raw events stored: {raw:,} ({time.perf_counter() - started:.0f} s)", flush=True)
    cursor.execute("ANALYZE")


def timed(client, url, count):
    client.get(url)
    times = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:300]
        size = len(response.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times) * 1000, p95 * 1000, size


def explain():
    from django.db import connection

    from collector.topology import sources

    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    end = datetime.now(UTC)
    with connection.execute_wrapper(capture):
        for name in ("published", "span_edges", "span_health", "consumers", "published_keys", "span_edge_keys"):
            getattr(sources, name)(end - timedelta(hours=1), end)
    with connection.cursor() as cursor:
        for sql, params in captured:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print("\n".join(row[0] for row in cursor.fetchall()), "\n", flush=True)


def raw_limit(count):
    """The source queries of a 1 h window and the hour before, alone; and each source's share."""
    from collector.topology import sources

    end = datetime.now(UTC)
    times, each = [], {}

    def run(name, call, *args):
        started = time.perf_counter()
        result = call(*args)
        each[name] = each.get(name, 0.0) + time.perf_counter() - started
        return result

    from django.db import transaction

    from collector.topology.readers import _roomy

    for _ in range(count):
        started = time.perf_counter()
        with transaction.atomic():
            _roomy()
            for_each_window(run, sources, end)
        times.append(time.perf_counter() - started)
    times.sort()
    print("  per source (ms per request): " + ", ".join(f"{k} {v * 1000 / count:.0f}" for k, v in each.items()))
    return statistics.median(times) * 1000, times[round(0.95 * (len(times) - 1))] * 1000


def for_each_window(run, sources, end):
    """What one /api/topology?last=1h reads: every source of the hour, and the keys of the hour before."""
    start = end - timedelta(hours=1)
    run("published", sources.published, start, end)
    consumers = run("consumers", sources.consumers, start, end)
    run("stream_topics", sources.stream_topics, {(c["broker"], c["stream"]) for c in consumers})
    run("span_edges", sources.span_edges, start, end)
    run("dead_letters", sources.dead_letters, start, end)
    run("registrations", sources.registrations, start, end)
    run("span_health", sources.span_health, start, end)
    start, end = start - timedelta(hours=1), start
    run("published_keys (before)", sources.published_keys, start, end)
    consumers = run("consumers (before)", sources.consumers, start, end)
    run("stream_topics (before)", sources.stream_topics, {(c["broker"], c["stream"]) for c in consumers})
    run("span_edge_keys (before)", sources.span_edge_keys, start, end)
    run("registrations (before)", sources.registrations, start, end)


def browser_figures(url, services):
    import shutil as sh

    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=sh.which("chromium"), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url + "/accounts/login/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", "bench-password")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        for attempt in range(3):
            started = time.perf_counter()
            page.goto(url + "/topology/?last=1h")
            page.wait_for_selector("#topology[data-drawn]", timeout=120_000)
            collapsed = time.perf_counter() - started
            collapsed_js = page.get_attribute("#topology", "data-draw-ms")
            status = page.inner_text("#topology-status")
            started = time.perf_counter()
            page.check("#topology-expand")
            page.wait_for_selector("#topology[data-drawn='2']", timeout=300_000)
            expanded = time.perf_counter() - started
            expanded_js = page.get_attribute("#topology", "data-draw-ms")
            expanded_status = page.inner_text("#topology-status")
            print(f"  Chromium run {attempt + 1}: collapsed {collapsed * 1000:.0f} ms from navigation to drawn "
                  f"(layout and render {collapsed_js} ms; {status.split(';')[1].split(' drawn')[0].strip()}); "
                  f"expanded {expanded * 1000:.0f} ms from the click (layout and render {expanded_js} ms; "
                  f"{expanded_status.split(';')[1].split(' drawn')[0].strip()})", flush=True)
        browser.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--raw", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print the plans of the source queries (1 h)")
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    env = {"DATABASE_URL": pg.url, "SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SETTINGS_MODULE": "dashboard.settings",
           "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost", "DB_STATEMENT_TIMEOUT": "0"}
    os.environ.update(env)
    web = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
        import django

        django.setup()
        from django.contrib.auth.models import Group, User
        from django.db import connection
        from django.test import Client

        with connection.cursor() as cursor:
            populate(cursor, args.services, args.raw)
        user = User.objects.create_user("bench", password="bench-password")
        user.groups.add(Group.objects.get_or_create(name="viewer")[0])
        client = Client()
        client.force_login(user)
        from collector.topology import shared as sharing

        shared = sharing.CACHE_SECONDS
        sharing.CACHE_SECONDS = 0  # every request computes its graph, until the shared figure
        if args.explain:
            explain()
            import cProfile
            import pstats

            client.get("/api/topology?last=1h")  # imports and first-use costs out of the profile
            profile = cProfile.Profile()
            profile.runcall(client.get, "/api/topology?last=1h")
            pstats.Stats(profile).sort_stats("tottime").print_stats(18)
        floor = raw_limit(args.requests)
        print(f"raw limit, the source queries alone (1 h, and the keys of the hour before): median {floor[0]:.0f} ms, "
              f"p95 {floor[1]:.0f} ms", flush=True)
        print("every request computing its graph:")
        for url, count in (("/api/topology?last=1h", args.requests), ("/api/topology?last=1h&compare=0", args.requests),
                           ("/api/topology?last=24h", max(5, args.requests // 6))):
            median, p95, size = timed(client, url, count)
            print(f"  {url:34} median {median:6.0f} ms, p95 {p95:6.0f} ms ({count} requests, {size / 1e6:.1f} MB JSON)",
                  flush=True)
        sharing.CACHE_SECONDS = shared
        print(f"polling pages sharing an answer for {shared:.0f} s (one request in {shared:.0f} s computes it):")
        median, p95, size = timed(client, "/api/topology?last=1h", args.requests)
        print(f"  {'/api/topology?last=1h':34} median {median:6.0f} ms, p95 {p95:6.0f} ms ({args.requests} requests)",
              flush=True)
        if args.no_browser:
            return
        port = servers.free_port()
        web = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "dashboard.asgi:application"], cwd=ROOT, env=os.environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.wait_for(lambda: servers._tcp_answers(port), "the web server", process=web)
        browser_figures(f"http://127.0.0.1:{port}", args.services)
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
