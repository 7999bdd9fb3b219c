"""The collector process: broker adapters feed raw messages in, the decoder and the
store writer turn them into rows, and only a committed batch is acked.

    brokers ──▶ queue ──▶ batch ──▶ decode ──▶ COPY + merge ──▶ commit ──▶ ack (each to its adapter)

It runs one adapter per enabled broker (`collector.ingest.taps`), all feeding the same
queue and writers; each message carries the adapter it came from, so its row gets that
broker's id and its ack goes back to that adapter.

If the database is down the batch is retried with growing waits and nothing is acked,
so the broker keeps (and later redelivers) every message. A row the database refuses is
stored again with less (never retried as it was), so one bad message never holds back its
batch. Messages older than the event retention are counted as expired and acked without
being stored (a stream backfilled from its start). Memory stays flat however
large the backlog or its messages: the queue holds at most QUEUE_MAX messages and
QUEUE_BYTES of payload, counted until each batch is acked; a batch takes at most
BATCH_MAX messages and BATCH_BYTES; the broker's flow control and max_ack_pending hold
the rest back.

A stop (SIGTERM) finishes the batches in hand if the database takes them within
STOP_GRACE seconds; else they stay unacked (the broker redelivers them) and the process
ends anyway, every clean-up step bounded in time.
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

from collector import decoders
from collector.db import WriterConnection, is_outage
from collector.events import writer as store
from collector.events.retention import expiry
from collector.ingest import decodepool
from collector.ingest.bounded import MessageQueue
from collector.ingest.configuration import (  # noqa: F401 (callers import them here)
    event_retention_days,
    load_brokers,
    load_configuration,
)
from collector.ingest.faults import Faults
from collector.ingest.heartbeat import Heartbeat
from collector.ingest.metrics import Metrics
from collector.ingest.rulebook import RuleBook
from collector.ingest.stall import StallWatch
from collector.ingest.subjects import Scope
from collector.ingest.taps import Taps, close_all
from collector.partitions import EVENTS, no_partition
from collector.waits import pause

log = logging.getLogger("eventscope.collector")

BATCH_MAX = 5000
BATCH_BYTES = 16 * 1024 * 1024  # payload of one batch (one larger message still goes alone)
BATCH_WAIT = 0.05  # seconds to wait for a batch to fill once its first message arrived
QUEUE_MAX = 20000
QUEUE_BYTES = 40 * 1024 * 1024  # payload held at once: queued, or in a batch not yet acked
STOP_GRACE = 3.0  # seconds a stop waits for the batches in hand
CLOSE_TIMEOUT = 2.0  # seconds each clean-up step may take once stopping
WRITERS = 2


class Abandoned(Exception):
    """A stop arrived while the database was down: the batch stays unacked on the broker."""


class Collector(Heartbeat):
    def __init__(self, broker, rules=None, scope=None, max_payload=1024 * 1024, metrics=None, name=None,
                 decode_workers=0, clock=None):
        """`broker`: one `collector.models.Broker`, or a list of them (one adapter each)."""
        brokers = list(broker) if isinstance(broker, (list, tuple)) else [broker]
        self.rules = rules or RuleBook()
        self.scope = scope or Scope()
        self.max_payload = max_payload
        self.metrics = metrics or Metrics()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.queue = MessageQueue(QUEUE_MAX, QUEUE_BYTES)
        self.links = [WriterConnection(store.prepare, EVENTS) for _ in range(WRITERS)]
        # nats-py buffers at most what the queue holds, per subscription: a stream's flow
        # control window (32 MB at most) always fits, so nothing it sends is dropped.
        self.taps = Taps(brokers, self.queue, pending_bytes=QUEUE_BYTES)
        self.adapter = self.taps.primary  # the NATS adapter the JetStream extensions use
        self.broker = self.adapter.broker  # its collector.models.Broker
        self.started = datetime.now(timezone.utc)
        self.stop = asyncio.Event()
        self.listening = False  # subscribed to everything it taps
        self.decode_pool = decodepool.make_pool(decode_workers)
        self.after_commit = []  # async callables(collector, rows) run after each commit, before the ack
        self.extensions = []  # async callables(collector, stop) started beside the loop (span receivers ...)
        self.reports = {}  # name -> callable returning a JSON-able dict, written into each heartbeat
        self.next_prune = time.monotonic() + 60
        self.clock = clock or _utcnow  # the time retention compares with (tests move it forward)
        self.retention_days = None  # event retention, read from the runtime settings when the loop starts
        self.stall = StallWatch(settings.COLLECTOR_STALL_SECONDS)
        self.stalled, self.stalled_since = "", None
        self.faults = Faults()

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
            ts=message.ts, received_at=message.received_at, broker_id=(message.source or self.adapter).broker.id,
            subject=message.subject,
            stream=message.stream, seq=message.seq, headers=headers, raw=kept, size=len(data),
            truncated=truncated, sha256=digest, format=decoded.format, event_id=decoded.event_id,
            type=decoded.type, version=decoded.version, producer=decoded.producer, key=self._key(message, decoded),
            trace_id=decoded.trace_id, span_id=decoded.span_id, payload=payload, note=note,
        )

    def _key(self, message, decoded):
        # A Kafka record's own key is the message's key; elsewhere the decoder finds one.
        return getattr(message, "key", None) or decoded.key

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
        decoded = decodepool.named(decoded)
        return self.decode_batch(messages, decoded)

    async def commit_batch(self, messages, rows, link=None):
        """Commit `rows`, retrying until the database takes them; then ack `messages`.
        Returns how many rows were new."""
        kept, expired = self.split_expired(rows)
        inserted = await self._write_until_stored(kept, link or self.links[0])
        self.faults.reached("after-commit")
        for hook in self.after_commit:
            # Extensions (dead letters ...) see each committed batch before it is acked,
            # expired rows included: a dead letter is kept by its own retention.
            await self._run_hook(hook, rows)
        await self.taps.ack(messages)
        self.metrics.stored.inc(inserted)
        self.metrics.duplicates.inc(len(kept) - inserted)
        if expired:
            self.metrics.expired.inc(expired)
            log.info("%d messages older than the %s-day event retention acked without storing",
                     expired, self.retention_days)
        self.faults.reached("after-ack")
        return inserted

    def split_expired(self, rows):
        """(rows to store, how many are past the event retention). An expired message would
        go into a day partition that retention drops (or already dropped): it is counted
        and acked instead."""
        if self.retention_days is None or not rows:
            return rows, 0
        oldest = expiry(self.clock(), self.retention_days)
        kept = [row for row in rows if row.ts >= oldest]
        return kept, len(rows) - len(kept)

    async def _run_hook(self, hook, rows):
        """An after-commit hook waits out a database outage (nothing acked meanwhile); any
        other failure is logged and the batch goes on, since retrying cannot cure it."""
        wait = 0.25
        while True:
            try:
                return await hook(self, rows)
            except Abandoned:
                raise
            except Exception as error:
                if not is_outage(error):
                    log.exception("after-commit hook %s failed; the batch goes on", getattr(hook, "__name__", hook))
                    return None
                if self.stop.is_set():
                    raise Abandoned() from error
                log.warning("after-commit hook failed (%s); retrying in %.2f s, nothing acked", error, wait)
                await asyncio.sleep(wait)
                wait = min(5.0, wait * 2)

    async def store_batch(self, messages):
        return await self.commit_batch(messages, self.decode_batch(messages))

    async def _write_until_stored(self, rows, link):
        """Write until the database takes the rows: an outage is waited out with growing
        waits (nothing acked); a refused batch is stored row by row."""
        wait = 0.25
        while True:
            try:
                conn = await link.connected()
                try:
                    return await store.write_events(conn, rows, link.partitions)
                except psycopg.Error as error:
                    if is_outage(error):
                        raise
                    if no_partition(error) and link.partitions.known:
                        # Retention (here or in another process) dropped a day this cache knew.
                        link.partitions.forget()
                        continue
                    # One row the database refuses must not hold back the others.
                    log.warning("batch refused (%s); storing its rows one by one", error)
                    return await self._write_one_by_one(rows, link)
            except psycopg.Error as error:
                if not is_outage(error):
                    raise
                self.metrics.db_errors.inc()
                if self.stop.is_set():
                    raise Abandoned() from error
                log.warning("database write failed (%s); retrying in %.2f s, nothing acked", error, wait)
                await link.close()
                await pause(self.stop, wait)
                wait = min(5.0, wait * 2)

    async def _write_one_by_one(self, rows, link):
        inserted, refused = await store.write_each(link.conn, rows, link.partitions)
        for row, error in refused:
            self.metrics.refused.inc()
            log.error("message %s/%s on %s not storable: %s", row.stream, row.seq, row.subject,
                      store.first_line(error))
        return inserted

    async def next_batch(self):
        """Up to BATCH_MAX messages and BATCH_BYTES of payload, waiting BATCH_WAIT at most
        for it to fill once the first message is in."""
        first = await self.queue.get()
        batch = [first]
        size = len(first.data or b"")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BATCH_WAIT
        while len(batch) < BATCH_MAX:
            if not self.queue.empty():
                if size + self.queue.peek_size() > BATCH_BYTES:
                    break
                message = self.queue.get_nowait()
                batch.append(message)
                size += len(message.data or b"")
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                # Waits without taking, so a timeout never loses a message.
                await asyncio.wait_for(self.queue.wait_not_empty(), remaining)
            except asyncio.TimeoutError:
                break
        self.metrics.received.inc(len(batch))
        return batch

    # --- the loop -----------------------------------------------------------------

    async def run(self, stop):
        """Two stages, so decoding the next batch overlaps the database writing this one:
        the reader takes and decodes batches, the writers commit them and ack."""
        self.stop = stop
        tasks = []
        try:
            if not await self.adapter.connect(stop):
                return
            try:
                self.retention_days = await database_sync_to_async(event_retention_days)()
            except Exception as error:  # the heartbeat reads it again every few seconds
                log.warning("event retention not read (%s); messages are stored whatever their age until it is",
                            error)
            await self.adapter.start()
            self.taps.ready[self.broker.name] = True
            tasks += [asyncio.create_task(self.taps.run_other(adapter, stop)) for adapter in self.taps.others]
            tasks += [asyncio.create_task(self._extension(start, stop)) for start in self.extensions]
            self.listening = True
            tasks.append(asyncio.create_task(self._heartbeat(stop)))
            decoded = asyncio.Queue(maxsize=3)
            # Several writers, each with its connection: one copies its batch in while the
            # database merges another's. Acks are per message, so their order does not matter.
            writers = [asyncio.create_task(self._write_loop(decoded, link)) for link in self.links]
            reader = asyncio.create_task(self._read_loop(decoded, stop))
            stopper = asyncio.create_task(stop.wait())
            tasks += [*writers, reader, stopper]
            await asyncio.wait([stopper, reader, *writers], return_when=asyncio.FIRST_COMPLETED)
            await self._finish(reader, writers, decoded)
        finally:
            await self._close(tasks)

    async def _read_loop(self, decoded, stop):
        while not stop.is_set():
            getter = asyncio.create_task(self.next_batch())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()  # messages not yet in a batch stay unacked on the broker
                return
            batch = getter.result()
            await decoded.put((batch, await self.decode_batch_elsewhere(batch)))

    async def _finish(self, reader, writers, decoded):
        """After a stop: the batch being decoded is handed over and the batches in hand are
        committed and acked, if that takes less than STOP_GRACE; what is left unfinished
        stays unacked and the broker redelivers it. A reader or writer that failed
        before any stop ends the run with its error."""
        stages = [reader, *writers]
        failed = [t for t in stages if t.done() and not t.cancelled() and t.exception() is not None]
        if failed and not self.stop.is_set():
            if not isinstance(failed[0].exception(), Abandoned):
                raise failed[0].exception()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        await asyncio.wait([reader], timeout=max(0.0, deadline - loop.time()))
        if reader.done() and not any(t.done() for t in writers):
            ends = asyncio.ensure_future(asyncio.gather(*(decoded.put(None) for _ in writers)))
            await asyncio.wait([ends], timeout=max(0.0, deadline - loop.time()))
            ends.cancel()
        await asyncio.wait(stages, timeout=max(0.0, deadline - loop.time()))
        errors = [t.exception() for t in stages if t.done() and not t.cancelled() and t.exception() is not None]
        if any(isinstance(error, Abandoned) for error in errors):
            log.warning("stopped while the database was down; the last batch will be redelivered")
        elif any(not t.done() for t in stages):
            log.warning("stopped with batches unfinished after %.0f s (database or a hook stuck); "
                        "they stay unacked and will be redelivered", STOP_GRACE)
        for error in errors:
            if not isinstance(error, Abandoned):
                raise error

    async def _close(self, tasks):
        """Every step bounded in time, so a stuck database or hook never holds the exit."""
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                # psycopg answers a first cancel by cancelling the query on the server and
                # waiting for it; a stuck server never answers, a second cancel gets through.
                task.cancel()
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=False, cancel_futures=True)
        await close_all(self.taps.adapters, _bounded)
        for link in self.links:
            await _bounded(link.close(), "closing a database connection")
        await _bounded(database_sync_to_async(self.forget_heartbeat)(), "removing the heartbeat")
        await _bounded(database_sync_to_async(_close_django_connections)(), "closing Django's connections")

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
            self.queue.release(item[0])


def _utcnow():
    return datetime.now(timezone.utc)


async def _bounded(awaitable, what, timeout=CLOSE_TIMEOUT):
    """Await a clean-up step for `timeout` seconds at most; a step that hangs is left."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        task.cancel()
        log.warning("%s took more than %.0f s; going on without it", what, timeout)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %s", what, task.exception())


def _close_django_connections():
    from django.db import connections

    connections.close_all()


def _clean_headers(headers):
    """Headers as stored: PostgreSQL's jsonb cannot hold NUL, so it is replaced."""
    if not headers:
        return None
    if "\x00" not in "".join(headers) and "\x00" not in "".join(headers.values()):
        return headers
    return {str(k).replace("\x00", "\ufffd"): str(v).replace("\x00", "\ufffd") for k, v in headers.items()}
