"""Topics page with many topics: server time of /topics/ and /api/topics for 10,000 topics
with a per-minute rollup over the last hour (600,000 rollup rows).

    .venv/bin/python bench/topics_page.py [--topics 10000]
"""
import argparse
import os
import shutil
import statistics
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--topics", type=int, default=10_000)
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    env = {"DATABASE_URL": pg.url, "SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_SETTINGS_MODULE": "dashboard.settings",
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
            cursor.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created) "
                           "VALUES ('nats', 'nats', 'nats://x', true, true, now()) RETURNING id")
            broker = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO collector_topic (broker_id, name, stream, best_effort, first_seen, last_seen) "
                "SELECT %s, 'svc' || (n %% 100) || '.topic.' || n, '', false, now() - interval '1 hour', now() "
                "FROM generate_series(1, %s) n", [broker, args.topics])
            cursor.execute(
                "INSERT INTO collector_eventrollup (minute, broker_id, subject, producer, type, version, count, bytes, errors) "
                "SELECT date_trunc('minute', now()) - m * interval '1 minute', %s, 'svc' || (n %% 100) || '.topic.' || n, "
                "'svc' || (n %% 100), 't', '1', 1 + (n * m) %% 50, 1000, ((n * m) %% 7 = 0)::int "
                "FROM generate_series(1, %s) n, generate_series(0, 59) m", [broker, args.topics])
            cursor.execute("ANALYZE")
        user = User.objects.create_user("bench", password="bench", is_superuser=True)
        client = Client()
        client.force_login(user)  # login() has no request for the login throttle to see
        print(f"{args.topics} topics, {args.topics * 60} rollup rows")
        for url in ("/topics/?last=1h", "/topics/?last=1h&sort=name", "/api/topics?last=1h", "/?last=1h"):
            client.get(url)
            times = []
            for _ in range(7):
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200
            print(f"  {url:32} median {statistics.median(times) * 1000:7.0f} ms, max {max(times) * 1000:7.0f} ms")
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
