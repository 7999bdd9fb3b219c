"""Bulk retry benchmark: 10,000 dead letters retried by one Celery job in a real worker
process; prints messages/s and the response times of the dead-letter pages while it runs
(and, for comparison, at rest).

    .venv/bin/python bench/dlq_retry.py [--count 10000] [--rate 1000000]

Uses the servers named by DATABASE_URL, NATS_URL and REDIS_URL (for instance those of
`./eventscope servers`); the database must be migrated. It makes its own stream, user and
dead letters and removes them at the end. `--rate` is the bulk rate limit for the run
(the admin setting is restored afterwards).
"""
import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def stream_count(url, stream):
    import nats

    async def go():
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info(stream)
        await nc.close()
        return info.state.messages

    return asyncio.run(go())


def nats_call(url, coroutine_factory):
    import nats

    async def go():
        nc = await nats.connect(url)
        try:
            return await coroutine_factory(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def time_pages(client, paths, until, pause=0.2):
    """Response times (ms) of each path, fetched round-robin until `until()` is true."""
    times = {path: [] for path in paths}
    while True:
        for path in paths:
            started = time.perf_counter()
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            times[path].append((time.perf_counter() - started) * 1000)
        if until():
            return times
        time.sleep(pause)


def report(title, times):
    print(title)
    for path, values in times.items():
        print(f"  {path:<34} n={len(values):<4} p50 {statistics.median(values):7.1f} ms   "
              f"p95 {percentile(values, 0.95):7.1f} ms   max {max(values):7.1f} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000_000)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))  # a strong one: DEBUG is off
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.utils import timezone

    from collector.models import AuditEntry, Broker, DeadLetter, DeadLetterSettings, RetryJob
    from dashboard.tasks_dlq import run_retry_job

    setup_test_environment()  # lets the test client in (ALLOWED_HOSTS)
    tag = uuid.uuid4().hex[:6]
    stream, subject, queue = f"BENCHDLQ{tag.upper()}", f"benchdlq{tag}.order.created", f"bench-dlq-{tag}"
    nats_call(settings.NATS_URL, lambda js: js.add_stream(name=stream, subjects=[f"benchdlq{tag}.>"]))
    broker, _ = Broker.objects.get_or_create(name="nats", defaults={"url": settings.NATS_URL, "kind": "nats"})
    user = User.objects.create_superuser(f"bench-{tag}", password=None)
    dlq_settings = DeadLetterSettings.load()
    old_rate, dlq_settings.bulk_rate = dlq_settings.bulk_rate, args.rate
    dlq_settings.save()
    body = b'{"type": "order.created", "version": "2", "body": {"order_id": "o-%d", "note": "' + b"x" * 200 + b'"}}'
    now = timezone.now()
    DeadLetter.objects.bulk_create([
        DeadLetter(key=f"bench:{tag}:{n}", broker=broker, reason="max_deliveries", subject=subject, stream=stream,
                   consumer="billing", stream_seq=n, headers={"X-Customer": str(n % 977)}, raw=body % n,
                   size=len(body % n), error="customer not found", deliveries=5, first_seen=now, last_seen=now)
        for n in range(args.count)
    ], batch_size=2000)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool", "solo", "-Q", queue,
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=os.environ.copy())
    client = Client()
    client.force_login(user)
    try:
        one = DeadLetter.objects.filter(key=f"bench:{tag}:0").values_list("id", flat=True).get()
        paths = ["/dlq/?last=1h", f"/dlq/{one}/", "/api/dlq?last=1h&consumer=billing"]
        at_rest = time_pages(client, paths, until=lambda: True, pause=0)
        for _ in range(9):
            for path, values in time_pages(client, paths, until=lambda: True, pause=0).items():
                at_rest[path].extend(values)

        selection = {"filters": {"stream": stream}, "from": (now - timezone.timedelta(minutes=1)).isoformat(),
                     "to": (now + timezone.timedelta(minutes=1)).isoformat()}
        job = RetryJob.objects.create(user=user, selection=selection, total=args.count)
        entry = AuditEntry.objects.create(user=user, action="dlq.bulk_retry", target=f"retry job {job.id}")
        run_retry_job.apply_async((job.id, entry.id), queue=queue)
        paths.append(f"/api/dlq/jobs/{job.id}")
        wait_start = time.perf_counter()
        while not RetryJob.objects.filter(pk=job.id).exclude(state="queued").exists():
            time.sleep(0.01)
            if time.perf_counter() - wait_start > 60:
                raise SystemExit("the worker did not start the job within 60 s")
        started = time.perf_counter()
        during = time_pages(client, paths, until=lambda: RetryJob.objects.filter(
            pk=job.id, state__in=["done", "failed"]).exists())
        job.refresh_from_db()
        elapsed = (job.finished - job.created).total_seconds()
        seen = time.perf_counter() - started
        on_broker = stream_count(settings.NATS_URL, stream)

        print(f"bulk retry of {args.count} dead letters (rate limit {args.rate}/s), one worker process (solo pool)")
        print(f"  job: {job.state}, {job.sent} republished, {job.skipped} skipped, {job.failed} failed; "
              f"{on_broker} messages on the broker")
        print(f"  {job.sent / seen:,.0f} messages/s (running {seen:.2f} s; {elapsed:.2f} s from enqueue to done)")
        report("pages at rest:", at_rest)
        report("pages while the job runs:", during)
    finally:
        worker.terminate()
        worker.wait(20)
        DeadLetter.objects.filter(key__startswith=f"bench:{tag}:").delete()
        RetryJob.objects.filter(user=user).delete()
        AuditEntry.objects.filter(user=user).delete()
        user.delete()
        dlq_settings.bulk_rate = old_rate
        dlq_settings.save()
        nats_call(settings.NATS_URL, lambda js: js.delete_stream(stream))


if __name__ == "__main__":
    main()
