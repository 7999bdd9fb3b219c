"""The forwarder: after each committed batch the collector hands it the new rows, and
every ~250 ms it sends what piled up as one message to the channel layer group. It never
sends one message per event and never makes ingestion wait:

- the after-commit hook only appends the rows to a list (no I/O, no encoding);
- the sending runs in a thread with an event loop of its own: a collector loop busy with
  a backlog (thousands of callbacks ready at once) would otherwise hold a due send for
  seconds, and a slow send would take the loop's time. A send that fails or hangs (Redis
  down) is given up after `SEND_TIMEOUT`, the tail is marked interrupted and the batch
  number is spent, so receivers see the gap and backfill it from PostgreSQL once the
  layer is back;
- what waits to be sent is bounded (`MAX_PENDING` events): beyond it the oldest are
  dropped the same way (a spent batch number), never an unbounded list.

With nothing to send it still sends an empty batch every `HEARTBEAT` seconds, so the
web side can tell a quiet bus from a collector that stopped forwarding.
"""
import asyncio
import logging
import threading
import time
import uuid
from collections import deque

from collector.live import protocol

log = logging.getLogger("eventscope.live")

INTERVAL = 0.25  # seconds between sends while events arrive (fewer, larger messages: cheaper per event)
HEARTBEAT = 1.0  # seconds between sends when the bus is quiet
SEND_TIMEOUT = 2.0
MAX_PENDING = 20_000  # events waiting to be sent
MAX_BATCH = 2_000  # events in one channel-layer message


def install(collector, layer=None):
    """Add live forwarding to a collector, before it runs."""
    forwarder = Forwarder(layer)
    collector.live = forwarder
    collector.after_commit.append(forwarder.on_commit)
    collector.extensions.append(forwarder.run)
    collector.reports["live"] = forwarder.report
    return forwarder


def _default_layer():
    from channels.layers import get_channel_layer

    return get_channel_layer()


def _max_event_id():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM collector_event")
        return cursor.fetchone()[0]


class Forwarder:
    def __init__(self, layer=None, interval=INTERVAL, heartbeat=HEARTBEAT, send_timeout=SEND_TIMEOUT,
                 max_pending=MAX_PENDING):
        self.layer = layer
        self.interval, self.heartbeat, self.send_timeout, self.max_pending = interval, heartbeat, send_timeout, max_pending
        self.source = uuid.uuid4().hex[:12]
        self.seq = 0
        self.lock = threading.Lock()  # the collector's loop appends, the sending thread takes
        self.pending = deque()  # (rows, commit time in seconds since the epoch)
        self.pending_count = 0
        self.watermark = 0  # highest received_at forwarded (microseconds)
        self.floor = None  # id below every event received after watermark - OVERLAP
        self.commits = deque()  # (commit time in microseconds, highest id of that commit)
        self.interrupted = None  # why the last send failed, None while sends succeed
        self.counters = {"batches": 0, "events": 0, "dropped_events": 0, "failed_sends": 0}
        self.last_send = 0.0
        self.dropping = False  # dropping for want of room, said once until a send succeeds

    def report(self):
        """For the collector's heartbeat: its counters and its cursor, which a page that
        has not had a batch yet starts from (see collector.live.readers.start_cursor)."""
        cursor = None if self.floor is None else {"rx": self.watermark, "id": self.floor}
        return {"source": self.source, "seq": self.seq, "cursor": cursor, "interrupted": self.interrupted,
                **self.counters}

    # --- in the commit path: cheap, no I/O --------------------------------------------

    async def on_commit(self, collector, rows):
        """After-commit hook: keep the new rows (those with an id) for the next send."""
        new = [row for row in rows if row.id is not None]
        if not new:
            return
        now = time.time()
        dropped = 0
        with self.lock:
            self.pending.append((new, now))
            self.pending_count += len(new)
            self.commits.append((int(now * 1_000_000), max(row.id for row in new)))
            while self.pending_count > self.max_pending:
                rows, _ = self.pending.popleft()
                self.pending_count -= len(rows)
                dropped += len(rows)
                self.seq += 1  # a spent number: receivers see the gap
        if dropped:
            self._dropped(dropped, "more events waiting than the live tail may hold")

    # --- in its own thread ----------------------------------------------------------------

    async def run(self, collector, stop):
        """Extension: start the sending thread and stop it (after a last send) when the
        collector stops."""
        halt = threading.Event()
        thread = threading.Thread(target=self._thread_main, args=(halt,), name="live-forwarder", daemon=True)
        thread.start()
        try:
            await stop.wait()
        finally:
            halt.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, self.send_timeout + 5)

    def _thread_main(self, halt):
        from django.db import connections

        try:
            if self.floor is None:
                # Nothing of this process is in flight yet: every later event gets a higher id.
                self.floor = _max_event_id()
            connections.close_all()
            asyncio.run(self._send_loop(halt))
        except Exception:  # a forwarder that dies says so; ingestion goes on without it
            log.exception("live forwarder stopped with an error")
        finally:
            connections.close_all()

    async def _send_loop(self, halt):
        if self.layer is None:
            self.layer = _default_layer()
        while not halt.is_set():
            started = time.monotonic()
            await self.flush()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        await self.flush()

    async def flush(self):
        """Send the pending events (in messages of at most MAX_BATCH), or a heartbeat when
        there are none and the last send is older than `heartbeat`. Returns how many
        messages were sent."""
        if not self.pending and time.monotonic() - self.last_send < self.heartbeat:
            return 0
        with self.lock:
            taken, self.pending, self.pending_count = self.pending, deque(), 0
        events = []
        for rows, committed in taken:
            events.extend(protocol.shape_row(row, committed) for row in rows)
        chunks = [events[i:i + MAX_BATCH] for i in range(0, len(events), MAX_BATCH)] or [[]]
        sent = 0
        for chunk in chunks:
            sent += await self._send(chunk)
        return sent

    async def _send(self, events):
        since = self.watermark
        if events:
            self.watermark = max(self.watermark, max(event[protocol.RX] for event in events))
        with self.lock:
            self._raise_floor()
            self.seq += 1
            seq = self.seq
        message = protocol.batch(self.source, seq, since, self.watermark, self.floor or 0, events)
        self.last_send = time.monotonic()
        try:
            await asyncio.wait_for(self.layer.group_send(protocol.LIVE_GROUP, message), self.send_timeout)
        except Exception as error:  # Redis down or slow: ingestion goes on, receivers see the gap
            self.counters["failed_sends"] += 1
            self.counters["dropped_events"] += len(events)
            reason = str(error) or type(error).__name__
            if self.interrupted is None:
                log.warning("live tail interrupted: the channel layer refused a batch (%s); "
                            "ingestion goes on and clients backfill the gap from the store", reason)
            self.interrupted = reason
            return 0
        if self.interrupted is not None:
            log.info("live tail resumed: the channel layer takes batches again")
            self.interrupted = None
        self.dropping = False
        self.counters["batches"] += 1
        self.counters["events"] += len(events)
        return 1

    def _raise_floor(self):
        """Commits older than watermark - OVERLAP numbered their rows before any event
        received after it: the highest of their ids is a floor for the cursor."""
        limit = int(time.time() * 1_000_000) if not self.watermark else self.watermark
        limit -= protocol.OVERLAP
        while self.commits and self.commits[0][0] < limit:
            _, highest = self.commits.popleft()
            self.floor = max(self.floor or 0, highest)

    def _dropped(self, count, reason):
        """Events that will never be sent (their batch number went unused, so receivers
        see a gap and backfill it from the store)."""
        self.counters["dropped_events"] += count
        if not self.dropping:
            log.warning("live tail dropped %d events (%s); clients backfill them from the store", count, reason)
        self.dropping = True
