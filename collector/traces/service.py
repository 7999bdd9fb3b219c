"""Span ingestion inside the collector: the four receivers on their ports, feeding one
batching sink that writes through `collector.traces.writer`.

    exporters ──▶ receivers ──▶ SpanSink (batches concurrent payloads) ──▶ COPY + merge ──▶ commit

A payload's HTTP or gRPC answer waits for the commit of the batch that holds it; if
the database is down the sink raises, so HTTP exporters get 503 and gRPC exporters
UNAVAILABLE and retry later. UDP has no answer: those spans are counted as lost.
"""
import asyncio
import logging

import psycopg
from channels.db import database_sync_to_async
from django.conf import settings

from collector.db import WriterConnection
from collector.partitions import SPANS
from collector.traces import writer as span_writer
from collector.traces.agent import start_jaeger_agents
from collector.traces.receivers import (
    COUNTER_FIELDS,
    start_jaeger_http,
    start_otlp_grpc,
    start_otlp_http,
)
from collector.waits import pause

log = logging.getLogger("eventscope.spans")

BATCH_SPANS = 5000
PENDING_PAYLOADS = 256
WRITERS = 2  # transactions in flight: one commits while the next batch is copied in
PRUNE_EVERY = 3600


class SpanSink:
    """`await sink(spans)` returns once the spans are committed (or raises why not);
    `await sink.enqueue(spans)` returns once they are queued, for UDP, which has no answer
    to wait for. Payloads arriving together are written in one transaction; a full queue
    holds the receivers back (UDP then drops and counts datagrams)."""

    def __init__(self, writers=WRITERS):
        self.pending = asyncio.Queue(PENDING_PAYLOADS)
        self.writers = [_Writer() for _ in range(writers)]
        self.stored = 0
        self.duplicates = 0
        self.refused = 0  # spans left out with a reason (implausible start times, unstorable values)
        self.db_errors = 0
        self.lost = 0  # queued UDP spans the database did not take

    async def __call__(self, spans):
        done = asyncio.get_running_loop().create_future()
        await self.pending.put((spans, done))
        await done

    async def enqueue(self, spans):
        await self.pending.put((spans, None))

    async def run(self):
        # Spans commute (stored once, summaries merge by min/max/sum), so batches may commit
        # in any order and several writers can share the queue.
        await asyncio.gather(*(self._drain(writer) for writer in self.writers))

    async def _drain(self, writer):
        # A free writer takes what is queued now, without waiting for more: payloads that
        # arrive while every writer is busy make the next batch. (Waiting to fill a batch
        # only added latency: each exporter waits for its commit before it sends again.)
        pending = self.pending
        while True:
            batch = [await pending.get()]
            size = len(batch[0][0])
            while size < BATCH_SPANS and not pending.empty():
                item = pending.get_nowait()
                batch.append(item)
                size += len(item[0])
            await self._write(writer, batch)

    async def _write(self, writer, batch):
        spans = [span for payload, _ in batch for span in payload]
        try:
            inserted, reasons = await writer.write(spans)
        except Exception as error:
            self.db_errors += 1
            log.warning("could not store %d spans: %s", len(spans), error)
            await writer.close()
            for payload, done in batch:
                if done is None:
                    self.lost += len(payload)
                elif not done.done():
                    done.set_exception(ConnectionError(f"spans not stored: {error}"))
            return
        if reasons:
            log.warning("%d spans refused, first: %s", len(reasons), reasons[0])
        self.refused += len(reasons)
        self.stored += inserted
        self.duplicates += len(spans) - len(reasons) - inserted
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(None)

    async def close(self):
        for writer in self.writers:
            await writer.close()


class _Writer(WriterConnection):
    """One database connection of the sink, (re)connected when needed."""

    def __init__(self):
        super().__init__(span_writer.prepare, SPANS, connect_timeout=5)

    async def write(self, spans):
        conn = await self.connected()
        try:
            return await span_writer.write_spans(conn, spans, self.partitions)
        except psycopg.DataError as error:
            # A span the database refuses must not hold back the others, nor make its
            # exporter retry forever: it is refused alone, with the reason.
            log.warning("batch refused (%s); storing its spans one by one", error)
            inserted, reasons = 0, []
            for span in spans:
                try:
                    new, refused = await span_writer.write_spans(self.conn, [span], self.partitions)
                except psycopg.DataError as one:
                    new, refused = 0, [f"span {span.span_id}: {str(one).splitlines()[0]}"]
                inserted += new
                reasons += refused
            return inserted, reasons


async def start_receivers(sink, host, max_body):
    """The receivers named by the settings; a port set to None is not opened. With
    SPAN_RECEIVER_TOKEN set the TCP receivers check it, and the Jaeger UDP ports, which
    cannot carry it, stay closed unless JAEGER_UDP_OPEN is true."""
    token = settings.SPAN_RECEIVER_TOKEN
    udp_open = not token or settings.JAEGER_UDP_OPEN
    # UDP datagrams are only queued, so the agent decodes the next one while a batch commits.
    plans = [
        (start_jaeger_http, settings.JAEGER_HTTP_PORT, sink, {"max_body": max_body, "token": token}),
        (start_otlp_http, settings.OTLP_HTTP_PORT, sink, {"max_body": max_body, "token": token}),
        (start_otlp_grpc, settings.OTLP_GRPC_PORT, sink, {"max_body": max_body, "token": token}),
    ]
    receivers = []
    if udp_open:
        # Both agent ports share one drain process (collector.traces.udpdrain).
        agent_ports = [(port, protocol) for port, protocol in
                       ((settings.JAEGER_AGENT_PORT, "compact"), (settings.JAEGER_BINARY_PORT, "binary"))
                       if port is not None]
        if agent_ports:
            receivers += await start_jaeger_agents(host, agent_ports, sink.enqueue)
    else:
        log.warning("Jaeger agent UDP ports closed: UDP cannot carry SPAN_RECEIVER_TOKEN "
                    "(JAEGER_UDP_OPEN=true opens them without authentication)")
    try:
        for start, port, target, options in plans:
            if port is None:
                continue
            receivers.append(await start(host, port, target, **options))
    except BaseException:
        for receiver in receivers:  # a port in use: the ports already open are closed again
            await receiver.wait_closed()
        raise
    return receivers


def _load_settings():
    from collector.models.traces import TraceSettings

    return TraceSettings.load()


async def serve_spans(collector, stop):
    """The collector extension: receivers up until `stop`, retention once an hour."""
    trace_settings = await database_sync_to_async(_load_settings)()
    sink = SpanSink()
    writer = asyncio.create_task(sink.run())
    receivers = []
    try:
        try:
            receivers = await start_receivers(sink, settings.EVENTSCOPE_SPANS_HOST, trace_settings.max_body_bytes)
        except OSError as error:
            # Events are still collected; spans are not until the port is free or changed.
            log.error("span receivers not started: %s (JAEGER_*_PORT / OTLP_*_PORT choose the ports)", error)
            return
        collector.span_sink, collector.span_receivers = sink, receivers
        for receiver in receivers:
            log.info("%s listening on port %s", receiver.name, receiver.port)
        while not stop.is_set():
            try:
                dropped = await database_sync_to_async(span_writer.prune_spans)()
                if dropped:
                    log.info("span retention dropped %s", ", ".join(dropped))
            except Exception as error:  # the next hour tries again
                log.warning("span retention failed: %s", error)
            await pause(stop, PRUNE_EVERY)
    finally:
        writer.cancel()
        # The collector cancels its extensions as it stops: each step of the clean-up
        # still runs, the database connection first so it is never left open.
        for step in [sink.close()] + [receiver.wait_closed() for receiver in receivers]:
            try:
                await step
            except asyncio.CancelledError:
                pass
            except Exception as error:
                log.warning("closing the span receivers: %s", error)


class ReceiverMetrics:
    """The receivers' counters on the collector's /metrics, one series per receiver:
    `eventscope_span_receiver_<counter>_total{receiver="OTLP/HTTP"}` (unauthorized, payloads …)."""

    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        for receiver in self.collector.span_receivers:
            receiver.refresh()
        for field in COUNTER_FIELDS:
            family = CounterMetricFamily(f"eventscope_span_receiver_{field}", f"Span receiver counter: {field}",
                                         labels=["receiver"])
            for receiver in self.collector.span_receivers:
                family.add_metric([receiver.name], getattr(receiver.counters, field))
            yield family


def receiver_report(collector):
    """What each heartbeat says of the span receivers: spans taken and datagrams dropped
    (by the drain's full queue or by the kernel), for the overview's collector table."""
    report = {"spans": 0, "dropped": 0, "dropped_by_kernel": 0, "sink_failures": 0}
    for receiver in collector.span_receivers:
        receiver.refresh()
        for key in report:
            report[key] += getattr(receiver.counters, key)
    if collector.span_sink is not None:
        report["stored"] = collector.span_sink.stored
        report["lost"] = collector.span_sink.lost
    return report


def install(collector, force=False):
    """Run the span receivers beside `collector`'s loop (call before `collector.run`),
    unless EVENTSCOPE_SPAN_RECEIVERS is false (they then run as `manage.py receive_spans`)."""
    collector.span_sink, collector.span_receivers = None, []
    if not (force or settings.EVENTSCOPE_SPAN_RECEIVERS):
        return
    collector.extensions.append(serve_spans)
    collector.reports["spans"] = lambda: receiver_report(collector)
    collector.metrics.registry.register(ReceiverMetrics(collector))
