"""The collector process: broker adapters feed raw messages in, the decoder and the
store writer turn them into rows, and only a committed batch is acked.

    broker ──▶ queue ──▶ batch ──▶ decode ──▶ COPY + merge ──▶ commit ──▶ ack

If the database is down the batch is retried with growing waits and nothing is acked,
so the broker keeps (and later redelivers) every message; the bounded queue and the
consumer's max_ack_pending keep memory flat however large the backlog.
"""
import asyncio
import logging
import os
import socket
import time
from datetime import datetime, timezone

import psycopg
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone as dj_timezone

from collector import decoders
from collector.brokers.nats import NatsAdapter
from collector.db import WriterConnection
from collector.events import writer as store
from collector.events.retention import prune
from collector.ingest import decodepool
from collector.ingest.metrics import Metrics
from collector.ingest.rulebook import RuleBook
from collector.ingest.subjects import Scope, parse_patterns
from collector.partitions import EVENTS
from collector.waits import pause

log = logging.getLogger("eventscope.collector")

BATCH_MAX = 5000
BATCH_WAIT = 0.05  # seconds to wait for a batch to fill once its first message arrived
QUEUE_MAX = 20000
WRITERS = 2
HEARTBEAT_SECONDS = 5.0


class Abandoned(Exception):
    """A stop arrived while the database was down: the batch stays unacked on the broker."""


class Collector:
    def __init__(self, broker, rules=None, scope=None, max_payload=1024 * 1024, metrics=None, name=None,
                 decode_workers=0):
        self.broker = broker  # collector.models.Broker
        self.rules = rules or RuleBook()
        self.scope = scope or Scope()
        self.max_payload = max_payload
        self.metrics = metrics or Metrics()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = asyncio.Queue(QUEUE_MAX)
        self.links = [WriterConnection(store.prepare, EVENTS) for _ in range(WRITERS)]
        self.adapter = NatsAdapter(broker.url, self.queue.put, settings.NATS_CREDS, settings.NATS_TLS_CA)
        self.started = datetime.now(timezone.utc)
        self.stop = asyncio.Event()
        self.listening = False  # subscribed to everything it taps
        self.decode_pool = decodepool.make_pool(decode_workers)
        self.after_commit = []  # async callables(collector, rows) run after each commit, before the ack
        self.extensions = []  # async callables(collector, stop) started beside the loop (span receivers ...)
        self.reports = {}  # name -> callable returning a JSON-able dict, written into each heartbeat
        self.next_prune = time.monotonic() + 60

    # --- the pieces tests call directly -------------------------------------------

    def to_row(self, message, decoded=None):
        """A storable row for one raw message (decoded here unless `decoded` is given)."""
        data = message.data or b""
        kept, truncated, digest = store.cap_payload(data, self.max_payload)
        headers = _clean_headers(message.headers)
        if decoded is None:
            decoded = decoders.decode(message.subject, headers, data, self.rules.for_subject(message.subject))
        payload, note = decoded.payload, decoded.note
        if truncated:
            payload = None
            note = (note + "; " if note else "") + f"payload of {len(data)} bytes stored truncated to {len(kept)}"
        return store.EventRow(
            ts=message.ts, received_at=message.received_at, broker_id=self.broker.id, subject=message.subject,
            stream=message.stream, seq=message.seq, headers=headers, raw=kept, size=len(data),
            truncated=truncated, sha256=digest, format=decoded.format, event_id=decoded.event_id,
            type=decoded.type, version=decoded.version, producer=decoded.producer, key=decoded.key,
            trace_id=decoded.trace_id, span_id=decoded.span_id, payload=payload, note=note,
        )

    def decode_batch(self, messages, decoded=None):
        """Rows for the messages inside the capture scope."""
        rows = []
        for index, message in enumerate(messages):
            if not self.scope.captures(message.subject):
                continue
            row = self.to_row(message, decoded[index] if decoded is not None else None)
            if row.note:
                self.metrics.decode_errors.inc()
            rows.append(row)
        return rows

    async def decode_batch_elsewhere(self, messages):
        """decode_batch with the decoding done in the worker process, when there is one."""
        if self.decode_pool is None:
            return self.decode_batch(messages)
        items = [(m.subject, m.headers, m.data or b"") for m in messages]
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(self.decode_pool, decodepool.decode_many, self.rules, items)
        return self.decode_batch(messages, decoded)

    async def commit_batch(self, messages, rows, link=None):
        """Commit `rows`, retrying until the database takes them; then ack `messages`.
        Returns how many rows were new."""
        inserted = await self._write_until_stored(rows, link or self.links[0])
        for hook in self.after_commit:
            # Extensions (dead letters ...) see each committed batch before it is acked.
            await hook(self, rows)
        await self.adapter.ack(messages)
        self.metrics.stored.inc(inserted)
        self.metrics.duplicates.inc(len(rows) - inserted)
        return inserted

    async def store_batch(self, messages):
        return await self.commit_batch(messages, self.decode_batch(messages))

    async def _write_until_stored(self, rows, link):
        wait = 0.25
        while True:
            try:
                conn = await link.connected()
                try:
                    return await store.write_events(conn, rows, link.partitions)
                except psycopg.DataError as error:
                    # One row the database refuses must not hold back the others.
                    log.warning("batch refused (%s); storing its rows one by one", error)
                    return await self._write_one_by_one(rows, link)
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self.metrics.db_errors.inc()
                if self.stop.is_set():
                    raise Abandoned() from error
                log.warning("database write failed (%s); retrying in %.2f s, nothing acked", error, wait)
                await link.close()
                await asyncio.sleep(wait)
                wait = min(5.0, wait * 2)

    async def _write_one_by_one(self, rows, link):
        inserted = 0
        for row in rows:
            try:
                inserted += await store.write_events(link.conn, [row], link.partitions)
            except psycopg.DataError as error:
                # Keep the message: its raw bytes with the reason, without the decoded fields.
                row.headers, row.payload = None, None
                row.note = f"decoded fields not storable: {str(error).splitlines()[0]}"
                inserted += await store.write_events(link.conn, [row], link.partitions)
        return inserted

    async def next_batch(self):
        first = await self.queue.get()
        batch = [first]
        deadline = asyncio.get_running_loop().time() + BATCH_WAIT
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        self.metrics.received.inc(len(batch))
        return batch

    # --- the loop -----------------------------------------------------------------

    async def run(self, stop):
        """Two stages, so decoding the next batch overlaps the database writing this one:
        the reader takes and decodes batches, the writers commit them and ack."""
        self.stop = stop
        if not await self.adapter.connect(stop):
            return
        await self.adapter.start()
        extensions = [asyncio.create_task(self._extension(start, stop)) for start in self.extensions]
        self.listening = True
        decoded = asyncio.Queue(maxsize=3)
        beat = asyncio.create_task(self._heartbeat(stop))
        # Several writers, each with its connection: one copies its batch in while the
        # database merges another's. Acks are per message, so their order does not matter.
        writers = [asyncio.create_task(self._write_loop(decoded, link)) for link in self.links]
        writer = asyncio.gather(*writers)
        try:
            while not stop.is_set() and not writer.done():
                getter = asyncio.create_task(self.next_batch())
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({getter, stopper, writer}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                batch = getter.result()
                await decoded.put((batch, await self.decode_batch_elsewhere(batch)))
            # Batches in hand are finished even when a stop arrives meanwhile.
            if not writer.done():
                for _ in writers:
                    await decoded.put(None)
            await writer
        except Abandoned:
            log.warning("stopped while the database was down; the last batch will be redelivered")
        finally:
            beat.cancel()
            writer.cancel()
            for task in extensions:
                task.cancel()
            # Let the extensions close their sockets before the process goes on.
            await asyncio.gather(*extensions, return_exceptions=True)
            if self.decode_pool is not None:
                self.decode_pool.shutdown(cancel_futures=True)
            await self.adapter.close()
            for link in self.links:
                await link.close()
            await database_sync_to_async(self.forget_heartbeat)()
            await database_sync_to_async(_close_django_connections)()

    async def _extension(self, start, stop):
        try:
            await start(self, stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # an extension that dies says so; the event collection goes on
            log.exception("collector extension %s stopped with an error", getattr(start, "__name__", start))

    async def _write_loop(self, decoded, link):
        while True:
            item = await decoded.get()
            if item is None:
                return
            await self.commit_batch(*item, link=link)

    async def _heartbeat(self, stop):
        while not stop.is_set():
            try:
                lag = await self.adapter.observer_lag()
                self.metrics.lag.set(lag)
                await database_sync_to_async(self.write_heartbeat)(lag)
                # Operators edit rules and scope in the admin while this runs.
                _, self.rules, self.scope, self.max_payload = await database_sync_to_async(load_configuration)()
                if time.monotonic() >= self.next_prune:
                    # Retention as a side effect of normal work: whole partitions, once an hour.
                    self.next_prune = time.monotonic() + 3600
                    dropped = await database_sync_to_async(prune)()
                    if dropped:
                        log.info("retention dropped %s", ", ".join(dropped))
            except Exception as error:  # a missed heartbeat is logged, the next one tries again
                log.warning("heartbeat failed: %s", error)
            await pause(stop, HEARTBEAT_SECONDS)

    def forget_heartbeat(self):
        """A clean stop removes this process from the collector list (a crashed one shows as down)."""
        from collector.models import CollectorHeartbeat

        CollectorHeartbeat.objects.filter(name=self.name).delete()

    def write_heartbeat(self, lag=0):
        from collector.models import CollectorHeartbeat

        counters = self.metrics.snapshot()
        counters["lag"] = lag
        counters.update(self.adapter.counters)
        for name, report in self.reports.items():
            counters[name] = report()
        counters["streams"] = {
            name: {"observed": state.observed, "retention": state.retention, "note": state.note}
            for name, state in self.adapter.streams.items()
        }
        CollectorHeartbeat.objects.update_or_create(
            name=self.name, defaults={"started": self.started, "beat": dj_timezone.now(), "counters": counters}
        )


def _close_django_connections():
    from django.db import connections

    connections.close_all()


def _clean_headers(headers):
    """Headers as stored: PostgreSQL's jsonb cannot hold NUL, so it is replaced."""
    if not headers:
        return None
    if not any("\x00" in k or "\x00" in v for k, v in headers.items()):
        return headers
    return {str(k).replace("\x00", "\ufffd"): str(v).replace("\x00", "\ufffd") for k, v in headers.items()}


def load_configuration():
    """The broker from NATS_URL (mirrored read-only into the admin) and the runtime settings."""
    from collector.models import Broker, DecodingRule, RuntimeSettings

    broker, _ = Broker.objects.update_or_create(
        name="nats", defaults={"kind": "nats", "url": settings.NATS_URL, "from_env": True, "enabled": True}
    )
    runtime = RuntimeSettings.load()
    scope = Scope(parse_patterns(runtime.include_subjects), parse_patterns(runtime.exclude_subjects))
    rules = RuleBook(DecodingRule.objects.filter(enabled=True))
    return broker, rules, scope, runtime.max_payload_bytes
