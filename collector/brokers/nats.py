"""NATS as a stream of raw messages: every JetStream stream through a durable observer
consumer, plus a core wildcard tap for subjects no stream captures.

The adapter only turns the bus into `RawMessage`s and acks them when told; it knows
nothing of decoding or storage.
"""
import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import nats
import nats.aio.client
from nats.js import api
from nats.js.errors import NotFoundError

from collector.brokers import RawMessage
from collector.ingest.subjects import PatternSet
from collector.secrets import redact_text, redact_url
from collector.waits import pause

log = logging.getLogger("eventscope.nats")

# Validated with the other settings (dashboard/settings.py refuses a name NATS would refuse).
OBSERVER = os.environ.get("EVENTSCOPE_CONSUMER", "").strip() or "eventscope"
DELIVER_PREFIX = "_INBOX.eventscope"
IGNORED_PREFIXES = ("$JS.", "$SYS.", "_INBOX.", "$KV.", "$O.", "$MQTT.")
DISCOVERY_SECONDS = 10.0
HEARTBEAT_SECONDS = 5.0  # the observers' idle heartbeat, which flow control requires
STALLED = "Nats-Consumer-Stalled"
# What the core tap may buffer before nats-py drops (and counts) its messages: it also
# receives a copy of every JetStream delivery, which it only has to look at and drop.
TAP_PENDING_BYTES = 16 * 1024 * 1024
STREAM_CHANGES = (".STREAM.CREATED.", ".STREAM.DELETED.", ".STREAM.UPDATED.")
CAPTURED_CACHE = 100_000  # subjects remembered; past it the memory starts again
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class StreamState:
    name: str
    subjects: list
    retention: str
    observed: bool  # False: WorkQueue stream captured by the core tap instead
    note: str = ""
    subscription: object = field(default=None, repr=False)


def parse_ack_subject(reply):
    """(stream, stream sequence, broker time) from a JetStream ack subject, v1 or v2 form."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        stream, sseq, ts = tokens[2], tokens[5], tokens[7]
    elif len(tokens) >= 11:  # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        stream, sseq, ts = tokens[4], tokens[7], tokens[9]
    else:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return stream, int(sseq), _EPOCH + timedelta(microseconds=int(ts) // 1000)


_PLAIN_HEADERS = b"NATS/1.0\r\n"
_WHITESPACE = re.compile(r"\s").search


def parse_header_lines(raw):
    """nats-py's `Client._parse_header_lines`, the same result in about half the time (the
    check for whitespace in a name is one regular expression instead of a generator)."""
    out = {}
    for line in raw.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


class Client(nats.aio.client.Client):
    """nats-py's client, reading headers without an inline status (every stored message's)
    in one pass; status lines (heartbeats, flow control, errors) go to nats-py's own parser."""

    async def _process_headers(self, headers):
        if not headers or not headers.startswith(_PLAIN_HEADERS):
            return await super()._process_headers(headers)
        if len(headers) <= len(_PLAIN_HEADERS):
            return None
        return parse_header_lines(headers[len(_PLAIN_HEADERS):]) or None


class TapClient(Client):
    """The core tap's connection. A `>` subscription also receives every JetStream
    delivery (named by the message's own subject, replying to `$JS.ACK.…`): one copy of
    each message our observers store, and of every other consumer's. Those are dropped
    here, before nats-py parses their headers and builds a message for them, which
    would cost the event loop as much again as the stored message itself."""

    async def _process_msg(self, sid, subject, reply, data, headers):
        if reply[:8] == b"$JS.ACK.":
            return None
        return await super()._process_msg(sid, subject, reply, data, headers)


async def connect(client_class=Client, **options):
    client = client_class()
    await client.connect(**options)
    return client


class NatsAdapter:
    def __init__(self, url, deliver, creds=None, tls_ca=None, pending_bytes=64 * 1024 * 1024):
        self.url = url
        self.deliver = deliver  # async callable(RawMessage)
        self.creds = creds
        self.tls_ca = tls_ca
        self.pending_bytes = pending_bytes
        self.nc = None  # observers, acks, admin calls
        self.tap_nc = None  # the core tap and the stream advisories
        self.js = None
        self.streams = {}
        self.core_seq = time.time_ns() // 1000
        self._filters = PatternSet()  # the subject filters of every stream we observe
        self._captured = {}  # core subject -> whether an observed stream stores it
        self._advisories = None  # the stream advisory subscription
        self._refreshing = None  # the discovery a stream advisory started, while it runs
        self._discovering = asyncio.Lock()
        self.counters = {"slow_consumer": 0, "reconnects": 0, "core_messages": 0}
        self._tasks = []

    async def connect(self, stop):
        """Connect, waiting 0.5, 1, 2 … 30 s between failed tries, until `stop` is set."""
        wait = 0.5
        options = dict(
            servers=self.url.split(","), name="eventscope-collector", max_reconnect_attempts=-1,
            reconnect_time_wait=1, error_cb=self._error, disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected, allow_reconnect=True, pending_size=self.pending_bytes,
        )
        if self.creds:
            options["user_credentials"] = self.creds
        if self.tls_ca:
            import ssl

            options["tls"] = ssl.create_default_context(cafile=self.tls_ca)
        while not stop.is_set():
            try:
                self.nc = await connect(**options)
                # The core tap has a connection of its own: it also receives a copy of every
                # JetStream delivery (ours included), which must not fill the server's buffer
                # for the connection the observers' flow-controlled messages and acks use.
                self.tap_nc = await connect(TapClient, **{**options, "name": "eventscope-collector-tap"})
                self.js = self.nc.jetstream()
                connected = self.nc.connected_url.geturl() if self.nc.connected_url else self.url
                log.info("connected to NATS at %s", redact_url(connected))
                return True
            except Exception as error:  # any failure to connect is retried the same way
                await self.close()
                log.warning("NATS connect failed (%s); retrying in %.1f s", redact_text(str(error)), wait)
                await pause(stop, wait)
                wait = min(30.0, wait * 2)
        return False

    async def _error(self, error):
        if isinstance(error, nats.errors.SlowConsumerError):
            # Said once per thousand: a flood of copies on the tap would flood the log too.
            self.counters["slow_consumer"] += 1
            if self.counters["slow_consumer"] % 1000 != 1:
                return
        log.warning("NATS: %s", error)

    async def _disconnected(self):
        log.warning("NATS disconnected")

    async def _reconnected(self):
        self.counters["reconnects"] += 1
        log.info("NATS reconnected")

    async def start(self):
        await self.discover()
        # The advisories first: a stream made just before its first publish must be known
        # (or known to be on its way) when the core tap sees that publish.
        # Both on one connection, which keeps the server's order between them.
        self._advisories = await self.tap_nc.subscribe("$JS.EVENT.ADVISORY.STREAM.*.>", cb=self._on_stream_advisory)
        await self.tap_nc.subscribe(">", queue="eventscope-tap", cb=self._on_core,
                                    pending_bytes_limit=TAP_PENDING_BYTES)
        self._tasks.append(asyncio.create_task(self._rediscover()))

    async def _rediscover(self):
        while True:
            await asyncio.sleep(DISCOVERY_SECONDS)
            try:
                await self.discover()
            except Exception as error:  # the next round tries again
                log.warning("stream discovery failed: %s", error)

    async def _on_stream_advisory(self, msg):
        if not any(action in msg.subject for action in STREAM_CHANGES):
            return
        # Marked before the first await: the core tap, holding a message the server sent
        # after this advisory, waits for the refresh instead of judging it by old filters.
        refresh = self._refreshing = asyncio.ensure_future(self.discover())
        try:
            await refresh
        except Exception as error:  # the periodic scan tries again
            log.warning("stream discovery after %s failed: %s", msg.subject, error)
        finally:
            if self._refreshing is refresh:
                self._refreshing = None

    async def discover(self):
        """Observe every stream: new ones get our durable consumer, deleted ones are dropped,
        and every stream's subject filters are refreshed."""
        async with self._discovering:  # advisories and the periodic scan take turns
            await self._discover()
        # Which subjects the streams store may have changed: judge each again.
        self._filters = PatternSet(p for state in self.streams.values() if state.observed for p in state.subjects)
        self._captured.clear()

    async def _discover(self):
        infos = await self.nc.jsm().streams_info()
        seen = set()
        offset = len(infos)
        while offset and offset % 256 == 0:
            page = await self.nc.jsm().streams_info(offset)
            if not page:
                break
            infos.extend(page)
            offset += len(page)
        for info in infos:
            config = info.config
            seen.add(config.name)
            if config.name in self.streams:
                self.streams[config.name].subjects = list(config.subjects or [])
                continue
            await self._observe(config)
        for name in list(self.streams):
            if name not in seen:
                state = self.streams.pop(name)
                if state.subscription is not None:
                    await state.subscription.unsubscribe()

    async def _observe(self, config):
        retention = str(getattr(config.retention, "value", config.retention) or "limits")
        state = StreamState(config.name, list(config.subjects or []), retention, observed=True)
        if retention == api.RetentionPolicy.WORK_QUEUE.value:
            # A WorkQueue stream allows one consumer per subject: ours would steal the
            # application's messages. Its subjects are captured by the core tap instead.
            state.observed = False
            state.note = "WorkQueue stream: captured from the core tap (best effort)"
            self.streams[config.name] = state
            log.info("stream %s is a WorkQueue: tapping its subjects on core NATS", config.name)
            return
        deliver = f"{DELIVER_PREFIX}.{config.name}"
        consumer = api.ConsumerConfig(
            durable_name=OBSERVER,
            description="Eventscope observer: stores every message, takes none from other consumers",
            deliver_subject=deliver,
            deliver_group=OBSERVER,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=60,
            max_ack_pending=20000,
            replay_policy=api.ReplayPolicy.INSTANT,
            # Flow control bounds what is in flight by bytes (the server's window is 32 MB
            # at most), whatever the size of the messages; it needs heartbeats.
            flow_control=True,
            idle_heartbeat=HEARTBEAT_SECONDS,
        )
        try:
            await self.nc.jsm().add_consumer(config.name, consumer)
        except nats.js.errors.APIError as error:
            # It exists with other settings (say an older version of ours, without flow
            # control, which the server cannot add later): keep it and bind.
            log.warning("observer on %s not (re)created: %s", config.name, error)
        state.subscription = await self.nc.subscribe(
            deliver, queue=OBSERVER, cb=self._on_stream, pending_bytes_limit=self.pending_bytes,
            pending_msgs_limit=100_000,
        )
        self.streams[config.name] = state
        log.info("observing stream %s (%s retention)", config.name, retention)

    def _stream_captures(self, subject):
        return self._filters.matches(subject)

    async def _stored_by_a_stream(self, subject):
        """Whether a stream we observe stores `subject`, from the streams' subject filters
        held in memory (no request per subject). A stream made a moment ago is announced
        by its advisory, which the server sends before it answers the request that made
        the stream, so before any publish to it: while such an advisory is unread or its
        refresh runs, the answer waits for it."""
        if self._advisories is not None and (self._advisories.pending_msgs or self._refreshing is not None):
            await self._stream_changes_applied()
        captured = self._captured.get(subject)
        if captured is None:
            captured = self._stream_captures(subject)
            if len(self._captured) >= CAPTURED_CACHE:
                self._captured.clear()
            self._captured[subject] = captured
        return captured

    async def _stream_changes_applied(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._refreshing is not None:
                try:
                    await asyncio.shield(self._refreshing)
                except Exception:  # logged by the advisory handler
                    pass
            elif self._advisories.pending_msgs:
                await asyncio.sleep(0)  # the advisory's own task reads it
            else:
                return

    async def _on_stream(self, msg):
        reply = msg.reply
        if not reply or not reply.startswith("$JS.ACK."):
            # Flow control asks whether everything sent before it was taken. This runs in
            # delivery order, after those messages went into the collector's bounded queue,
            # so answering now lets the server send more only when there is room. A
            # heartbeat may name a flow-control request whose answer was lost.
            answer = reply if reply and reply.startswith("$JS.FC.") else (msg.headers or {}).get(STALLED)
            if answer:
                await self.nc.publish(answer, b"")
            return
        now = datetime.now(timezone.utc)
        stream, seq, ts = parse_ack_subject(msg.reply)
        await self.deliver(RawMessage(msg.subject, stream, seq, ts, now, msg.headers, msg.data, msg.reply))

    async def _on_core(self, msg):
        if msg.reply.startswith("$JS.ACK."):
            # A JetStream delivery to some consumer: the server names it by the message's
            # original subject, so the `>` tap sees it too. It is stored from its stream.
            return
        subject = msg.subject
        if subject.startswith(IGNORED_PREFIXES) or await self._stored_by_a_stream(subject):
            return  # a stream publish is stored once, from the stream
        now = datetime.now(timezone.utc)
        self.core_seq += 1
        self.counters["core_messages"] += 1
        await self.deliver(RawMessage(subject, "", self.core_seq, now, now, msg.headers, msg.data, None))

    async def ack(self, messages):
        publish = self.nc.publish
        for message in messages:
            if message.reply:
                await publish(message.reply, b"")
        try:
            await self.nc.flush()
        except nats.errors.FlushTimeoutError:
            # The acks are sent; their confirmation waits behind a window of large messages
            # still being read. A lost ack costs a redelivery, stored once.
            log.warning("acks of %d messages sent but not confirmed in time", len(messages))

    async def observer_progress(self):
        """{stream: (ack floor, messages pending)} of each observer consumer: the floor is the
        stream sequence below which every message is acked; pending counts the messages not
        yet delivered plus those delivered and not acked. Streams that do not answer are left out."""
        found = {}
        for state in list(self.streams.values()):
            if not state.observed:
                continue
            try:
                info = await self.nc.jsm().consumer_info(state.name, OBSERVER, timeout=2)
            except (NotFoundError, asyncio.TimeoutError, nats.errors.Error):
                continue
            floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
            found[state.name] = (floor or 0, (info.num_pending or 0) + (info.num_ack_pending or 0))
        return found

    async def close(self):
        for task in self._tasks:
            task.cancel()
        for nc in (self.tap_nc, self.nc):
            if nc is not None and not nc.is_closed:
                await nc.close()


def secured_options(url):
    """nats.connect options for the bus NATS_URL names: its credentials file (NATS_CREDS)
    and CA (NATS_TLS_CA). The worker's publish and retry connect with them as the collector
    does; a broker added in the admin with another URL gets neither."""
    from django.conf import settings

    options = {}
    if url != settings.NATS_URL:
        return options
    if settings.NATS_CREDS:
        options["user_credentials"] = settings.NATS_CREDS
    if settings.NATS_TLS_CA:
        import ssl

        options["tls"] = ssl.create_default_context(cafile=settings.NATS_TLS_CA)
    return options


async def publish(url, subject, headers, data, timeout=5.0):
    """Publish one message; through JetStream when a stream captures the subject (so
    `Nats-Msg-Id` deduplicates), else on core NATS. Returns a one-line outcome."""
    # nats-py keeps retrying a refused first connection: bound the whole attempt.
    return await asyncio.wait_for(_publish(url, subject, headers, data, timeout), timeout * 3)


async def _publish(url, subject, headers, data, timeout):
    nc = await nats.connect(url.split(","), connect_timeout=timeout, max_reconnect_attempts=1, allow_reconnect=False,
                            **secured_options(url))
    try:
        js = nc.jetstream(timeout=timeout)
        try:
            ack = await js.publish(subject, data, headers=headers or None, timeout=timeout)
        except nats.js.errors.NoStreamResponseError:
            await nc.publish(subject, data, headers=headers or None)
            await nc.flush(timeout)
            return "published on core NATS (no stream captures this subject)"
        if ack.duplicate:
            return f"already in stream {ack.stream} at sequence {ack.seq} (duplicate suppressed)"
        return f"stored in stream {ack.stream} at sequence {ack.seq}"
    finally:
        await nc.close()
