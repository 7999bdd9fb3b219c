"""Live fan-out benchmark: 50 websocket clients on /ws/events/ while the collector drains a
backlog sized for ~5,000 events/s over the run. Prints the collector's ingest rate (a)
without clients, (b) with them, (c) without again, the loss of (b) against the mean of
(a) and (c), the commit -> client delay (p50/p90/p99/max,
from the commit time each forwarded event carries to its arrival in a client), the web
process's resident memory over the run, and the CPU of every process, the clients'
included (they run in a process of their own, aiohttp's websocket client).

    .venv/bin/python bench/live_fanout.py [--duration 60] [--clients 50] [--filtered 25]
                                          [--rate 5000] [--size 512] [--nice 0]

Runs on embedded servers of its own (under var/). Each client grants credit for what it
drew, as the page does; half of them (`--filtered`) subscribe with a subject pattern that
matches everything, so every event goes through the filter. The rate cap is the admin's
default (200 events/s per client).
"""
import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- the clients' process -------------------------------------------------------------------


async def run_clients(url, cookie, count, filtered, out):
    """`count` websocket clients until SIGTERM; then their figures as JSON into `out`."""
    import aiohttp

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    origin = url.replace("ws://", "http://").split("/ws/")[0]
    results = [{"delays": [], "forwarding": [], "events": 0, "matching": 0, "skipped": 0, "backfilled": 0, "subscribed": False,
                "errors": []} for _ in range(count)]

    async def client(index, session):
        result = results[index]
        drawn = 0
        async with session.ws_connect(url, headers={"Cookie": cookie, "Origin": origin}, max_msg_size=0) as socket:
            filters = {"subject": "bench.>"} if index < filtered else {}
            await socket.send_str(json.dumps({"type": "subscribe", "filters": filters, "credit": 1000}))
            reader = asyncio.ensure_future(socket.receive())
            stopper = asyncio.ensure_future(stop.wait())
            while True:
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    reader.cancel()
                    return
                message = reader.result()
                if message.type != aiohttp.WSMsgType.TEXT:
                    result["errors"].append(str(message.type))
                    return
                arrived = time.time()
                content = json.loads(message.data)
                kind = content["type"]
                if kind == "events":
                    events = content["events"]
                    if content["backfill"]:
                        result["backfilled"] += len(events)
                    else:
                        result["events"] += len(events)
                        result["delays"].extend(arrived - e["committed"] for e in events if e.get("committed"))
                        if events and content.get("sent"):
                            # The collector's part: from the newest event's commit to the send.
                            result["forwarding"].append(content["sent"] - events[-1]["committed"])
                    drawn += len(events)
                    if drawn >= 250:  # as the page does: a quarter of its window at a time
                        await socket.send_str(json.dumps({"type": "credit", "n": drawn}))
                        drawn = 0
                elif kind == "stats":
                    result["matching"] += content["matching"]
                    result["skipped"] += content["skipped"]
                elif kind == "subscribed":
                    result["subscribed"] = True
                elif kind == "error":
                    result["errors"].append(content["reason"])
                reader = asyncio.ensure_future(socket.receive())

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(i, session) for i in range(count)), return_exceptions=True)
    Path(out).write_text(json.dumps(results))


# --- the conductor ---------------------------------------------------------------------------


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pids):
    return sum(cpu_by_process(pids).values())


def cpu_by_process(pids):
    """CPU seconds so far of each process and its children (PostgreSQL's backends)."""
    import psutil

    found = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return found


def cpu_used(before, pids):
    """CPU seconds since `before` (a cpu_by_process result) of these processes and their
    children, counting those started meanwhile from zero."""
    now = cpu_by_process(pids)
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())


async def fill(url, stream, count, size):
    import nats

    from bench.collector_ingest import payload

    nc = await nats.connect(url)
    js = nc.jetstream()
    subject = f"bench.{stream.lower()}"
    await js.add_stream(name=stream, subjects=[subject])
    body = payload(0, size)
    for n in range(count):
        await js.publish_async(subject, body)
    await js.publish_async_completed()
    await nc.close()


def ack_floor(url, stream):
    import nats

    async def go():
        nc = await nats.connect(url)
        try:
            return (await nc.jsm().consumer_info(stream, "eventscope")).ack_floor.stream_seq
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()

    return asyncio.run(go())


def drain(env, stream, count, web_pid, samples, servers_by_name):
    """Run `manage.py collect` until `stream`'s backlog is committed and acked; returns the
    ingest rate (events/s, from the first ack to the last) and the CPU each process used.
    Samples the web process's memory into `samples` meanwhile."""
    import psutil

    web = psutil.Process(web_pid)
    collector = subprocess.Popen([sys.executable, "manage.py", "collect"], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = {"collector": [collector.pid], "web": [web_pid], **servers_by_name}
    started = first = None
    cpu_before = {}
    last_report = time.monotonic()
    try:
        while True:
            samples.append((time.monotonic(), web.memory_info().rss))
            floor = ack_floor(env["NATS_URL"], stream)
            if started is None and floor > 0:
                started, first = time.monotonic(), floor
                cpu_before = {name: cpu_by_process(pids) for name, pids in watched.items()}
            if floor >= count:
                break
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"    ... {floor:,} of {count:,} committed", flush=True)
            if collector.poll() is not None:
                raise RuntimeError(collector.stderr.read().decode()[-2000:])
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu = {name: cpu_used(cpu_before[name], pids) / elapsed for name, pids in watched.items()}
        return (count - first) / elapsed, elapsed, cpu
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(30)


def session_cookie():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def wait_for_port(port, timeout=60):
    from runner.servers import port_is_free

    deadline = time.monotonic() + timeout
    while port_is_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port}")
        time.sleep(0.2)


def memory_line(samples):
    values = [rss / 2**20 for _, rss in samples]
    half = samples[len(samples) // 2:]
    slope = 0.0
    if len(half) > 2:
        (t0, m0), (t1, m1) = half[0], half[-1]
        slope = (m1 - m0) / 2**20 / max(t1 - t0, 1e-6) * 60
    return (f"start {values[0]:.0f} MB, max {max(values):.0f} MB, end {values[-1]:.0f} MB; "
            f"second half {slope:+.1f} MB/min ({len(values)} samples)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=60, help="seconds each phase should last at --rate")
    parser.add_argument("--rate", type=int, default=5000, help="events a second the backlog is sized for")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--filtered", type=int, default=25, help="clients with a subject pattern")
    parser.add_argument("--size", type=int, default=512, help="bytes per message")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the web process and the clients at this niceness (a diagnostic: is a loss CPU "
                             "contention on this machine, or the collector's own work?)")
    parser.add_argument("--clients-process", nargs=4, metavar=("URL", "COOKIE", "OUT", "FILTERED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_process:
        url, cookie, out, filtered = args.clients_process
        asyncio.run(run_clients(url, cookie, args.clients, int(filtered), out))
        return

    from runner import servers
    from runner.supervise import RECEIVER_PORTS

    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-live-", dir=ROOT / "var"))
    pg = servers.Postgres(folder / "postgres").start()
    bus = servers.Nats(folder / "nats").start()
    redis = servers.Redis(folder / "redis").start()
    web_port = servers.free_port(28000)
    env = {**os.environ, "DATABASE_URL": pg.url, "NATS_URL": bus.url, "REDIS_URL": redis.url, "SECRET_KEY": "bench",
           "DJANGO_SETTINGS_MODULE": "dashboard.settings", "LOG_LEVEL": "WARNING", "EVENTSCOPE_METRICS_PORT": "0"}
    for variable, (default, kind) in RECEIVER_PORTS.items():
        if variable != "EVENTSCOPE_METRICS_PORT":
            env[variable] = str(servers.free_port(default + 20000, kind=kind))
    os.environ.update(env)
    web = clients = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        cookie = session_cookie()
        web_log = open(folder / "web.log", "wb")
        niced = ["nice", "-n", str(args.nice)] if args.nice else []
        web = subprocess.Popen([*niced, sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(web_port),
                                "dashboard.asgi:application"], cwd=ROOT, env=env, stdout=web_log,
                               stderr=subprocess.STDOUT)
        wait_for_port(web_port)
        count = args.rate * args.duration
        print(f"live fan-out: {args.clients} clients ({args.filtered} with a subject pattern), backlog of "
              f"{count:,} events of ~{args.size} bytes per phase (~{args.duration} s at {args.rate:,}/s)", flush=True)

        asyncio.run(fill(bus.url, "LIVEA", count, args.size))
        ours = {"postgres": [pg.process.pid], "nats-server": [bus.process.pid], "redis-server": [redis.process.pid]}
        memory = []
        alone, alone_s, alone_cpu = drain(env, "LIVEA", count, web.pid, memory, ours)
        print(f"(a) collector without clients: {alone:,.0f} events/s ({alone_s:.0f} s); web RSS {memory_line(memory)}",
              flush=True)

        asyncio.run(fill(bus.url, "LIVEB", count, args.size))
        out = folder / "clients.json"
        clients = subprocess.Popen(
            [*niced, sys.executable, __file__, "--clients", str(args.clients), "--clients-process",
             f"ws://127.0.0.1:{web_port}/ws/events/", cookie, str(out), str(args.filtered)],
            cwd=ROOT, env=env)
        time.sleep(3)  # connected and subscribed
        clients_cpu_before = cpu_by_process([clients.pid])
        memory = []
        started = time.monotonic()
        shared, shared_s, shared_cpu = drain(env, "LIVEB", count, web.pid, memory, ours)
        time.sleep(2)  # the last batches reach the clients
        clients_cpu = cpu_used(clients_cpu_before, [clients.pid]) / (time.monotonic() - started)
        clients.send_signal(signal.SIGTERM)
        clients.wait(60)
        results = json.loads(out.read_text())

        delays = [d for r in results for d in r["delays"]]
        forwarding = [d for r in results for d in r["forwarding"]]
        received = sum(r["events"] for r in results)
        connected = sum(1 for r in results if r["subscribed"])
        errors = [e for r in results for e in r["errors"]]
        # (c) without clients again: the store has grown and the machine's load drifts, so
        # (b) is compared with the mean of the runs around it.
        asyncio.run(fill(bus.url, "LIVEC", count, args.size))
        again, again_s, again_cpu = drain(env, "LIVEC", count, web.pid, [], ours)
        baseline = (alone + again) / 2
        print(f"(b) collector with {connected} clients connected: {shared:,.0f} events/s ({shared_s:.0f} s)")
        print(f"(c) collector without clients again: {again:,.0f} events/s ({again_s:.0f} s)")
        print(f"    ingest loss with clients: {1 - shared / baseline:.1%} of the mean of (a) and (c) (target < 10%); "
              f"collector CPU per event {alone_cpu['collector'] / alone * 1e6:.0f} / "
              f"{shared_cpu['collector'] / shared * 1e6:.0f} / {again_cpu['collector'] / again * 1e6:.0f} us (a/b/c)")
        print(f"    commit -> client delay over {len(delays):,} deliveries: p50 {percentile(delays, .5) * 1000:,.0f} ms, "
              f"p90 {percentile(delays, .9) * 1000:,.0f} ms, p99 {percentile(delays, .99) * 1000:,.0f} ms, "
              f"max {max(delays, default=float('nan')) * 1000:,.0f} ms (target p99 < 1 s)")
        print(f"    of which commit -> sent by the collector (newest event of each message): "
              f"p50 {percentile(forwarding, .5) * 1000:,.0f} ms, p99 {percentile(forwarding, .99) * 1000:,.0f} ms")
        per_client = received / max(connected, 1) / shared_s
        matching = sum(r["matching"] for r in results)
        skipped = sum(r["skipped"] for r in results)
        print(f"    each client drew {per_client:,.0f} events/s (rate cap 200/s); counted {matching:,} matching, "
              f"{skipped:,} of them shown only as counts; backfilled {sum(r['backfilled'] for r in results):,}")
        print(f"    web (daphne) RSS over the run: {memory_line(memory)}")
        print("    CPU, share of one core (a -> b -> c): " + ", ".join(
            f"{name} {alone_cpu[name]:.0%} -> {shared_cpu[name]:.0%} -> {again_cpu[name]:.0%}" for name in shared_cpu)
            + f", clients process {clients_cpu:.0%} (all {args.clients} clients)")
        if errors:
            print(f"    client errors: {errors[:5]}")
            problems = [line for line in (folder / "web.log").read_text().splitlines()
                        if "Error" in line or "Exception" in line or "WARNING" in line]
            print("    web log: " + "\n    ".join(problems[-10:]))
    finally:
        for process in (clients, web):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        redis.stop()
        bus.stop()
        pg.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
