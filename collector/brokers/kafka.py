"""Kafka as a stream of raw messages: the collector's own consumer group (never an
application's) subscribes to every topic by pattern, so topics made later are found at the
next metadata refresh; an offset is committed only once every message before it in its
partition is committed to the store.

Each message is stored with its topic as subject and stream, its record timestamp as broker
time, its headers and its key. The store's unique key is (broker, stream, seq, ts); Kafka's
is (topic, partition, offset), so the sequence packs both: `seq = partition << 48 | offset`
(offsets below 2**48, partitions below 2**15 fit a bigint). A redelivered record has the same
topic, position and timestamp, so it is stored once; a topic deleted and made again starts
its offsets at 0 with later timestamps, so its records are new rows, as they should be.

Header values and keys are bytes; they are kept as text when they are printable UTF-8,
else as `base64:` and their bytes (`as_text` / `as_bytes` turn one into the other), so a
retry sends back exactly what was received.
"""
import asyncio
import base64
import binascii
import logging
import re
import ssl
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.secrets import redact_text
from collector.waits import pause

log = logging.getLogger("eventscope.kafka")

SCHEME = "kafka"
PARTITION_SHIFT = 48
OFFSET_MASK = (1 << PARTITION_SHIFT) - 1
MAX_PARTITION = (1 << 15) - 1
DISCOVERY_SECONDS = 5.0  # metadata refresh: how soon a new topic is tapped
COMMIT_TIMEOUT = 10.0
FETCH_RECORDS = 2000  # records taken from the client per call
BASE64 = "base64:"
_PRINTABLE = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*")
# Every topic; the client leaves out the broker's internal ones (__consumer_offsets ...).
EVERY_TOPIC = r".*"


def position(partition, offset):
    """The store's sequence number of a record."""
    if not 0 <= partition <= MAX_PARTITION or not 0 <= offset <= OFFSET_MASK:
        raise ValueError(f"partition {partition} / offset {offset} out of the range the store packs")
    return partition << PARTITION_SHIFT | offset


def partition_offset(seq):
    """(partition, offset) of a stored sequence number."""
    return seq >> PARTITION_SHIFT, seq & OFFSET_MASK


def as_text(value):
    """Bytes as stored: printable UTF-8 as it is, anything else (or text that looks like
    our prefix) as `base64:` and the bytes. None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode()
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _PRINTABLE.fullmatch(text) and not text.startswith(BASE64):
        return text
    return BASE64 + base64.b64encode(value).decode()


def as_bytes(text):
    """The bytes `as_text` stored as `text`."""
    if text is None:
        return None
    if text.startswith(BASE64):
        try:
            return base64.b64decode(text[len(BASE64):], validate=True)
        except (binascii.Error, ValueError):
            return text.encode()
    return text.encode()


def headers_of(record_headers):
    """Kafka headers (a list of name, bytes; names may repeat) as a dict of text. A repeated
    name keeps its last value under the name (what Kafka's lastHeader() reads) and the
    earlier ones under `name#1`, `name#2` ..."""
    if not record_headers:
        return None
    found = {}
    for name, value in record_headers:
        text = as_text(value if value is not None else b"")
        if name in found:
            index = 1
            while f"{name}#{index}" in found:
                index += 1
            found[f"{name}#{index}"] = found[name]
        found[name] = text
    return found


def record_headers(headers):
    """The Kafka header list for stored `headers` (the inverse of `headers_of`, repeated
    names in their order)."""
    items = []
    for name, value in (headers or {}).items():
        items.append((re.sub(r"#\d+$", "", name), as_bytes(str(value))))
    return items


def bootstrap_of(url):
    """`kafka://host:9092,host2:9092` (or the bare list) -> "host:9092,host2:9092"."""
    return url.strip().removeprefix(SCHEME + "://").rstrip("/")


def client_options(url):
    """aiokafka security options for the cluster `url` names: the KAFKA_* settings apply to
    the cluster KAFKA_BOOTSTRAP_SERVERS names; a broker added in the admin gets none."""
    from django.conf import settings

    if not settings.KAFKA_BOOTSTRAP_SERVERS or bootstrap_of(url) != bootstrap_of(settings.KAFKA_BOOTSTRAP_SERVERS):
        return {}
    options = {"security_protocol": settings.KAFKA_SECURITY_PROTOCOL}
    if settings.KAFKA_SECURITY_PROTOCOL in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.KAFKA_SSL_CAFILE)
    if settings.KAFKA_SECURITY_PROTOCOL.startswith("SASL_"):
        options.update(sasl_mechanism=settings.KAFKA_SASL_MECHANISM, sasl_plain_username=settings.KAFKA_SASL_USERNAME,
                       sasl_plain_password=settings.KAFKA_SASL_PASSWORD)
    return options


def broker_time(milliseconds, fallback):
    if milliseconds is None or milliseconds < 0:
        return fallback  # a record of the pre-0.10 format carries no time
    return datetime.fromtimestamp(milliseconds // 1000, UTC).replace(microsecond=(milliseconds % 1000) * 1000)


@dataclass(slots=True)
class KafkaMessage:
    """A record as the collector's queue takes it (the fields of a NATS RawMessage, plus
    where it sits in Kafka and its key)."""

    subject: str
    stream: str
    seq: int
    ts: datetime
    received_at: datetime
    headers: dict | None
    data: bytes
    partition: int = 0
    offset: int = 0
    key: str | None = None
    reply: None = None
    source: object = None  # the adapter it came from (set by the collector)
    token: object = None


class StreamState:
    """A topic as the heartbeat lists it."""

    observed = True
    retention = "kafka"

    def __init__(self, note=""):
        self.note = note


class PartitionLedger:
    """Offsets of one partition handed to the collector and not yet stored, in order. The
    offset to commit is the first one not stored: a later batch stored before an earlier
    one (two writers) moves nothing until the earlier one is stored too."""

    __slots__ = ("committed", "next_offset", "stored", "waiting")

    def __init__(self):
        self.waiting = deque()
        self.stored = set()
        self.next_offset = None  # one past the highest offset delivered
        self.committed = None

    def delivered(self, offset):
        self.waiting.append(offset)
        self.next_offset = offset + 1 if self.next_offset is None else max(self.next_offset, offset + 1)

    def store(self, offset):
        self.stored.add(offset)

    def commit_point(self):
        """The offset to commit now, or None when nothing new is safe to commit."""
        moved = None
        while self.waiting and self.waiting[0] in self.stored:
            offset = self.waiting.popleft()
            self.stored.discard(offset)
            moved = offset + 1
        if not self.waiting:
            self.stored.clear()
        if moved is None or (self.committed is not None and moved <= self.committed):
            return None
        return moved


def adapter_for(broker, deliver, pending_bytes):
    """The adapter of a `Broker` row of kind kafka (see `collector.brokers.make_adapter`).
    The client's own fetch buffer is bounded by its fetch sizes, not by `pending_bytes`."""
    from django.conf import settings

    return KafkaAdapter(broker.url, deliver, settings.EVENTSCOPE_CONSUMER, client_options(broker.url), broker=broker)


class KafkaAdapter:
    """One Kafka cluster: the tap (a consumer in the collector's group, every topic) and an
    admin client for the lag sampler and dead letters."""

    kind = "kafka"

    def __init__(self, url, deliver, group="eventscope", options=None, broker=None):
        """`deliver`: async callable(KafkaMessage); `options`: aiokafka security options."""
        self.url = url
        self.bootstrap = bootstrap_of(url)
        self.deliver = deliver  # async callable(KafkaMessage)
        self.group = group
        self.options = options if options is not None else {}
        self.broker = broker
        self.consumer = None
        self.admin = None
        self.streams = {}  # topic -> StreamState, for the heartbeat
        self.ledgers = {}  # TopicPartition -> PartitionLedger
        self.counters = {"kafka_messages": 0, "kafka_rebalances": 0, "kafka_commit_failures": 0}
        self._commit_lock = asyncio.Lock()
        self._tasks = []
        self._stop = None

    # --- connecting ------------------------------------------------------------------

    async def connect(self, stop):
        """Start the consumer and admin client, waiting 0.5, 1, 2 … 30 s between failed
        tries, until `stop` is set."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self._stop = stop
        wait = 0.5
        while not stop.is_set():
            try:
                self.consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, group_id=self.group, client_id="eventscope-collector",
                    enable_auto_commit=False, auto_offset_reset="earliest",
                    metadata_max_age_ms=int(DISCOVERY_SECONDS * 1000), exclude_internal_topics=True, **self.options)
                await self.consumer.start()
                self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="eventscope-admin",
                                                 **self.options)
                await self.admin.start()
                log.info("connected to Kafka at %s (group %s)", self.bootstrap, self.group)
                return True
            except Exception as error:  # any failure to connect is retried the same way
                await self.close()
                log.warning("Kafka connect to %s failed (%s); retrying in %.1f s", self.bootstrap,
                            redact_text(str(error) or type(error).__name__), wait)
                await pause(stop, wait)
                wait = min(30.0, wait * 2)
        return False

    async def start(self):
        from aiokafka import ConsumerRebalanceListener

        adapter = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                # What is stored is committed while the partitions are still ours; what is
                # not yet stored is read again by their next owner (and stored once).
                await adapter._commit(only=set(revoked))
                for tp in revoked:
                    adapter.ledgers.pop(tp, None)

            async def on_partitions_assigned(self, assigned):
                adapter.counters["kafka_rebalances"] += 1
                for tp in assigned:
                    adapter.ledgers.setdefault(tp, PartitionLedger())
                topics = {tp.topic for tp in assigned}
                adapter.streams = {topic: adapter.streams.get(topic) or StreamState() for topic in topics}
                log.info("Kafka: tapping %d partitions of %d topics", len(assigned), len(topics))

        self.consumer.subscribe(pattern=EVERY_TOPIC, listener=Listener())
        self._tasks.append(asyncio.create_task(self._read()))

    # --- reading ---------------------------------------------------------------------

    async def _read(self):
        from aiokafka.errors import KafkaError

        wait = 0.5
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
                wait = 0.5
            except asyncio.CancelledError:
                raise
            except KafkaError as error:
                log.warning("Kafka fetch failed (%s); retrying in %.1f s", error, wait)
                await asyncio.sleep(wait)
                wait = min(30.0, wait * 2)
                continue
            for tp, records in batches.items():
                ledger = self.ledgers.setdefault(tp, PartitionLedger())
                for record in records:
                    message = self.message(record)
                    ledger.delivered(record.offset)
                    self.counters["kafka_messages"] += 1
                    await self.deliver(message)

    def message(self, record):
        now = datetime.now(UTC)
        return KafkaMessage(
            subject=record.topic, stream=record.topic, seq=position(record.partition, record.offset),
            ts=broker_time(record.timestamp, now), received_at=now, headers=headers_of(record.headers),
            data=record.value if record.value is not None else b"", partition=record.partition, offset=record.offset,
            key=as_text(record.key))

    # --- acknowledging ---------------------------------------------------------------

    async def ack(self, messages):
        """The messages are committed to the store: commit each partition's offset as far as
        every earlier message is stored too."""
        from aiokafka import TopicPartition

        for message in messages:
            ledger = self.ledgers.get(TopicPartition(message.stream, message.partition))
            if ledger is not None:  # else its partition was revoked meanwhile: its next owner reads it again
                ledger.store(message.offset)
        await self._commit()

    async def _commit(self, only=None):
        from aiokafka.errors import KafkaError
        from aiokafka.structs import OffsetAndMetadata

        if self.consumer is None:
            return
        async with self._commit_lock:
            offsets = {}
            for tp, ledger in list(self.ledgers.items()):
                if only is not None and tp not in only:
                    continue
                point = ledger.commit_point()
                if point is not None:
                    offsets[tp] = (ledger, point)
            if not offsets:
                return
            try:
                await asyncio.wait_for(self.consumer.commit({tp: OffsetAndMetadata(point, "") for tp, (_, point)
                                                             in offsets.items()}), COMMIT_TIMEOUT)
            except (TimeoutError, KafkaError) as error:
                # Not committed: these messages are read again after a restart or a
                # rebalance, and stored once.
                self.counters["kafka_commit_failures"] += 1
                log.warning("Kafka offset commit failed (%s); those messages will be read again",
                            error or type(error).__name__)
                return
            for ledger, point in offsets.values():
                ledger.committed = point

    async def observer_progress(self):
        """{topic[partition]: (committed offset, messages not yet stored)} from what the
        client knows (no broker call): the end offset from the last fetch."""
        found = {}
        if self.consumer is None:
            return found
        for tp, ledger in list(self.ledgers.items()):
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            # Nothing committed since the assignment: the floor is what was handed over
            # (waiting to be stored), else the partition was found caught up.
            floor = ledger.committed
            if floor is None:
                floor = ledger.waiting[0] if ledger.waiting else (ledger.next_offset or end)
            found[f"{tp.topic}[{tp.partition}]"] = (floor, max(0, end - floor))
        return found

    async def close(self):
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks = []
        for client in (self.consumer, self.admin):
            if client is None:
                continue
            try:
                await asyncio.wait_for(client.stop() if client is self.consumer else client.close(), 5)
            except Exception as error:  # closing a client that never connected, or a dead one
                log.debug("closing a Kafka client: %s", error)
        self.consumer = self.admin = None

