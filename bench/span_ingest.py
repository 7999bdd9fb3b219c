"""Span ingest benchmark: spans/s into PostgreSQL through the collector's receivers,
beside the raw decode rate and the raw idempotent write rate of the same spans, all
measured in one run.

    DATABASE_URL=postgresql://... .venv/bin/python bench/span_ingest.py [--spans 51200]

Cases: OTLP/HTTP protobuf requests of 512 spans (the SDK's batch size) posted by
--clients threads (each like one service's exporter) in another process, and Jaeger agent UDP datagrams (compact, as many
spans as the exporter fits in one) sent by another process. The database named by
DATABASE_URL is migrated and its span tables emptied between cases.
"""
import argparse
import asyncio
import multiprocessing
import os
import secrets
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
warnings.filterwarnings("ignore", category=DeprecationWarning)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))  # a strong one: DEBUG is off

OTLP_BATCH = 512
WRITE_BATCH = 5000
PUBLISHED_OTEL_COLLECTOR = 24_000  # spans/s, OTLP pass-through on 2 CPUs, no storage


def make_payloads(count):
    """(OTLP bodies of 512 spans, agent datagrams with their span counts), from fresh SDK spans."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from span_decode import agent_datagram, web_spans

    spans = web_spans(count)
    bodies = [encode_spans(spans[i:i + OTLP_BATCH]).SerializeToString() for i in range(0, len(spans), OTLP_BATCH)]
    datagrams, i, per = [], 0, 90
    while i < len(spans):
        chunk = spans[i:i + per]
        try:
            datagrams.append((agent_datagram(chunk), len(chunk)))
            i += len(chunk)
        except TimeoutError:  # the exporter drops a datagram over 65,000 bytes: fewer spans per datagram
            per -= 10
    return bodies, datagrams


def empty_tables():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE collector_span, collector_tracesummary, collector_spanrollup, collector_spanoperation")


def decode_rate(bodies, datagrams):
    from collector.traces.jaeger import decode_jaeger_agent
    from collector.traces.otlp import decode_otlp_protobuf

    started = time.perf_counter()
    otlp = [span for body in bodies for span in decode_otlp_protobuf(body).spans]
    otlp_rate = len(otlp) / (time.perf_counter() - started)
    started = time.perf_counter()
    udp = sum(len(decode_jaeger_agent(data, "compact").spans) for data, _ in datagrams)
    udp_rate = udp / (time.perf_counter() - started)
    return otlp, otlp_rate, udp_rate


async def write_rate(spans):
    """The raw idempotent write: COPY + merge in batches, then the same spans again (all duplicates)."""
    import psycopg

    from collector.partitions import SPANS, Partitions
    from collector.traces import writer as spanstore
    from collector.db import conninfo

    async with await psycopg.AsyncConnection.connect(conninfo()) as conn:
        await spanstore.prepare(conn)
        partitions = Partitions(SPANS)
        rates = []
        for _ in range(2):
            started, new = time.perf_counter(), 0
            for i in range(0, len(spans), WRITE_BATCH):
                new += (await spanstore.write_spans(conn, spans[i:i + WRITE_BATCH], partitions))[0]
            rates.append((len(spans) / (time.perf_counter() - started), new))
    return rates


def post_bodies(url, bodies, threads):
    import requests
    from concurrent.futures import ThreadPoolExecutor

    session_of = {}

    def post(body):
        import threading

        session = session_of.setdefault(threading.get_ident(), requests.Session())
        response = session.post(url, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=60)
        return response.status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


def send_datagrams(port, datagrams, pause_every=20, pause=0.002):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        for n, (data, _) in enumerate(datagrams):
            udp.sendto(data, ("127.0.0.1", port))
            if n % pause_every == 0:
                time.sleep(pause)  # a real agent's clients are many and spread out, not one tight loop


async def through_receiver(kind, payloads, expected, clients=8):
    """Start one receiver with the collector's sink, feed it from another process, and time
    until every span is committed (or nothing more arrives for 3 s)."""
    from collector.traces.agent import start_jaeger_agent
    from collector.traces.receivers import start_otlp_http
    from collector.traces.service import SpanSink

    sink = SpanSink()
    writer = asyncio.create_task(sink.run())
    if kind == "otlp":
        receiver = await start_otlp_http("127.0.0.1", 0, sink)
        target, args = post_bodies, (f"http://127.0.0.1:{receiver.port}/v1/traces", payloads, clients)
    else:
        receiver = await start_jaeger_agent("127.0.0.1", 0, sink.enqueue, protocol="compact", queue_size=10_000)
        target, args = send_datagrams, (receiver.port, payloads)
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    started = time.perf_counter()
    process.start()
    last, last_change = 0, time.perf_counter()
    while sink.stored < expected and time.perf_counter() - last_change < 3:
        await asyncio.sleep(0.01)
        if sink.stored != last:
            last, last_change = sink.stored, time.perf_counter()
    elapsed = (last_change if sink.stored < expected else time.perf_counter()) - started
    await asyncio.get_running_loop().run_in_executor(None, process.join)
    stored, counters = sink.stored, receiver.counters
    await receiver.wait_closed()
    writer.cancel()
    await sink.close()
    return stored / elapsed, stored, counters


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=51_200)
    parser.add_argument("--clients", type=int, default=8, help="concurrent OTLP/HTTP exporters")
    options = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"making {options.spans:,} spans with the OpenTelemetry SDK ...", flush=True)
    bodies, datagrams = make_payloads(options.spans)
    import gc

    # The SDK objects that made the payloads are not the collector's: keep the garbage
    # collector from walking them during the measurements.
    gc.collect()
    gc.freeze()
    spans, otlp_decode, udp_decode = decode_rate(bodies, datagrams)
    empty_tables()
    (write_new, new), (write_again, again_new) = asyncio.run(write_rate(spans))
    assert new == len(spans) and again_new == 0, (new, again_new)
    empty_tables()
    otlp_rate, otlp_stored, otlp_counters = asyncio.run(through_receiver("otlp", bodies, len(spans), options.clients))
    empty_tables()
    udp_spans = sum(n for _, n in datagrams)
    udp_rate, udp_stored, udp_counters = asyncio.run(through_receiver("udp", datagrams, udp_spans))
    empty_tables()

    print(f"\n{'measure':52} {'spans/s':>9}   (load average {os.getloadavg()[0]:.2f} at the end)")
    print(f"{'raw decode, OTLP protobuf (512 a request)':52} {otlp_decode:9,.0f}")
    print(f"{'raw decode, Jaeger agent compact datagrams':52} {udp_decode:9,.0f}   ({len(datagrams)} datagrams, ~{udp_spans // len(datagrams)} spans each)")
    print(f"{'raw idempotent write, new spans (COPY + merge)':52} {write_new:9,.0f}   (batches of {WRITE_BATCH})")
    print(f"{'raw idempotent write, the same spans again':52} {write_again:9,.0f}")
    print(f"{'OTLP/HTTP receiver -> PostgreSQL':52} {otlp_rate:9,.0f}   ({otlp_stored:,}/{len(spans):,} stored, "
          f"{options.clients} exporters)")
    print(f"{'Jaeger agent UDP receiver -> PostgreSQL':52} {udp_rate:9,.0f}   ({udp_stored:,}/{udp_spans:,} stored, "
          f"{udp_counters.dropped} datagrams dropped by the queue, {udp_counters.dropped_by_kernel} by the kernel)")
    floor_otlp = min(otlp_decode, write_new)
    floor_udp = min(udp_decode, write_new)
    print(f"\nOTLP/HTTP: {otlp_rate / otlp_decode:.0%} of raw decode ({otlp_decode:,.0f} spans/s)")
    print(f"OTLP/HTTP: {otlp_rate / floor_otlp:.0%} of min(decode, write) = {floor_otlp:,.0f}")
    print(f"UDP burst: {udp_stored / udp_spans:.1%} of spans kept")
    print(f"UDP agent: {udp_rate / floor_udp:.0%} of min(decode, write) = {floor_udp:,.0f}")
    print(f"OpenTelemetry Collector, published: ~{PUBLISHED_OTEL_COLLECTOR:,} spans/s OTLP on 2 CPUs, without storage")


if __name__ == "__main__":
    main()
