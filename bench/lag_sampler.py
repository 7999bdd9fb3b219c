"""Lag sampler benchmark: wall time and CPU of one sampling round over 10,000 JetStream
consumers (100 streams × 100 pull consumers, each filtered on its own subject with messages
waiting), on embedded servers of its own.

    .venv/bin/python bench/lag_sampler.py [--streams 100] [--per-stream 100] [--rounds 5]

The first round is cold (every consumer is new, and the oldest message of each is fetched from
its stream); later rounds reuse the answers of unchanged floors, as the sampler does every
interval. Between rounds a fifth of the consumers get a new message and half of those ack
their oldest, so a tenth of the floors move with messages still waiting (looked up again).
One round a minute also rolls the minute that ended into the rollups ("rollups").
Prints per round: wall ms, sampler CPU ms, nats-server CPU ms, PostgreSQL CPU ms.
"""
import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def make_consumers(url, streams, per_stream):
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    for s in range(streams):
        await js.add_stream(api.StreamConfig(name=f"LAG{s}", subjects=[f"lag{s}.>"], storage=api.StorageType.MEMORY))
        for c in range(per_stream):
            await js.add_consumer(f"LAG{s}", api.ConsumerConfig(
                durable_name=f"svc{c}", filter_subject=f"lag{s}.c{c}", ack_policy=api.AckPolicy.EXPLICIT))
        for c in range(per_stream):
            await js.publish_async(f"lag{s}.c{c}", b'{"n": 1}')
    await js.publish_async_completed()
    print(f"made {streams * per_stream} consumers with a message each in {time.perf_counter() - started:.1f} s",
          flush=True)
    await nc.close()


async def churn(url, streams, per_stream, share=10):
    """A new message for two in every `share` consumers; one of the two also acks its oldest,
    so its floor moves with messages still waiting (its oldest is looked up again)."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    for s in range(streams):
        for c in [*range(0, per_stream, share), *range(1, per_stream, share)]:
            await js.publish_async(f"lag{s}.c{c}", b'{"n": 2}')
    await js.publish_async_completed()
    for s in range(streams):
        for c in range(1, per_stream, share):
            sub = await js.pull_subscribe_bind(f"svc{c}", f"LAG{s}")
            try:
                for msg in await sub.fetch(1, timeout=0.5):
                    await msg.ack_sync()
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                pass
            await sub.unsubscribe()
    await nc.close()


def cpu_of(pid):
    """CPU seconds of a process and its children (PostgreSQL's backends)."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


async def rounds(url, count, streams, per_stream, server_pids):
    import nats
    import psycopg
    from prometheus_client import CollectorRegistry

    from collector.db import conninfo
    from collector.lag.jetstream import JetStreamSource
    from collector.lag.sampler import Sampler
    from collector.lag.service import LagGauges
    from collector.partitions import LAG_SAMPLES, Partitions

    nc = await nats.connect(url, pending_size=256 * 1024 * 1024)
    conn = await psycopg.AsyncConnection.connect(conninfo())
    async with conn.cursor() as cur:
        await cur.execute("INSERT INTO collector_broker (name, kind, url, enabled, from_env, created) "
                          "VALUES ('nats', 'nats', %s, true, true, now()) RETURNING id", [url])
        broker = (await cur.fetchone())[0]
    await conn.commit()
    sampler = Sampler(broker, JetStreamSource(nc), "bench")
    gauges = LagGauges(CollectorRegistry())
    partitions = Partitions(LAG_SAMPLES)
    watched = server_pids  # this run's own servers, not others on the machine
    print(f"{'round':>5} {'consumers':>9} {'wall ms':>8} {'sampler CPU ms':>15} {'gauges ms':>9} "
          f"{'nats-server CPU ms':>18} {'postgres CPU ms':>15}")
    for index in range(count):
        if index:
            await churn(url, streams, per_stream)
        before = {name: cpu_of(pid) for name, pid in watched.items()}
        cpu, wall = time.process_time(), time.perf_counter()
        if os.environ.get("BENCH_PROFILE") and index == 1:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            lag_round, _ = await sampler.sample(conn, partitions)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(35)
        else:
            lag_round, _ = await sampler.sample(conn, partitions)
        elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
        shown = time.perf_counter()
        gauges.show("nats", sampler.latest)
        gauge_ms = (time.perf_counter() - shown) * 1000
        servers = {name: (cpu_of(pid) - before[name]) * 1000 for name, pid in watched.items()}
        print(f"{index + 1:>5} {lag_round.consumers:>9} {elapsed * 1000:>8.0f} {used * 1000:>15.0f} {gauge_ms:>9.0f} "
              f"{servers['nats-server']:>18.0f} {servers['postgres']:>15.0f}", flush=True)
        print("      " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in sampler.timings.items()), flush=True)
        print("      write: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in sampler.write_timings.items()), flush=True)
    async with conn.cursor() as cur:
        await cur.execute("SELECT count(*), count(*) FILTER (WHERE oldest_ts IS NOT NULL), "
                          "count(*) FILTER (WHERE oldest_source = 'stream') FROM collector_lagsample")
        total, with_oldest, from_stream = await cur.fetchone()
    print(f"{total} samples stored, {with_oldest} with the oldest message's time ({from_stream} from the stream)")
    await conn.close()
    await nc.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--per-stream", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from runner import servers

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    env = {"DATABASE_URL": pg.url, "NATS_URL": bus.url, "SECRET_KEY": "bench",
           "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
        import django

        django.setup()
        asyncio.run(make_consumers(bus.url, args.streams, args.per_stream))
        print(f"load average before the rounds: {os.getloadavg()[0]:.1f} (2 cores)")
        asyncio.run(rounds(bus.url, args.rounds, args.streams, args.per_stream,
                           {"nats-server": bus.process.pid, "postgres": pg.process.pid}))
    finally:
        bus.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
