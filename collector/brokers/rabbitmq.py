"""RabbitMQ as a stream of raw messages (aio-pika on the collector's loop).

The tap is a queue of the collector's own, `<EVENTSCOPE_CONSUMER>.tap`: a quorum queue
(a broker restart loses nothing; messages are acked after their batch is committed, as
for NATS), bounded by `x-max-length-bytes` with `drop-head`, so a stopped collector can
never trip the broker's memory or disk alarm and block every publisher: past the bound
the oldest copies are dropped, which shows as a gap on the topics page. It takes nothing
from application queues. It is fed by

- the firehose (`amq.rabbitmq.trace`, bound `publish.#`), turned on through the
  management API at start and again on each reconnect, since it is per node and vhost
  and off after every broker restart; or, where that is impossible,
- a binding to every exchange in the way each type allows: `#` on topic, any key on
  fanout, each key some queue is bound with on direct, `x-match: all` with no other
  arguments on headers (it matches everything). The default exchange cannot be bound
  (only the firehose sees it); other types (x-delayed-message, consistent hash ...) are
  listed as not covered. Exchanges come from the management API, else the standard
  `amq.*` ones. Note: these bindings make messages routable that were not (a mandatory
  publish is no longer returned, an alternate exchange no longer receives them).

A message becomes a `RawMessage` with `stream` = its exchange ("amq.default" for the
default one), `subject` = its topic: the routing key, except on fanout and headers
exchanges (which ignore it) and for an empty key, where it is the exchange's name;
headers = the AMQP headers plus its properties as `amqp-*` headers.

Idempotency: events are unique on (broker, stream, seq, ts). Here `seq` is a 63-bit hash
of the message id where there is one, else of the exchange, routing key, headers and body;
`ts` is the message's `timestamp` property where set, else the tap's arrival time. It
cannot catch a redelivery (after a collector crash or a lost ack) of a message without a
timestamp property: its arrival time differs, so it is stored twice. And two different
messages with the same id and timestamp (a publisher reusing ids) are stored once.
"""
import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
from aiormq.exceptions import ChannelPreconditionFailed

from collector.brokers import RawMessage
from collector.brokers.rabbitmq_api import Management, ManagementError, vhost_of
from collector.brokers.rabbitmq_wire import (  # noqa: F401 (other rooms import them from here)
    DEFAULT_EXCHANGE,
    PROPERTIES,
    TRACE_EXCHANGE,
    from_delivery,
    from_trace,
    header_text,
    message_key,
    subject_for,
    to_raw,
)
from collector.secrets import redact_text, redact_url
from collector.waits import pause

log = logging.getLogger("eventscope.rabbitmq")

OBSERVER = os.environ.get("EVENTSCOPE_CONSUMER", "").strip() or "eventscope"
TAP_MAX_BYTES = 512 * 1024 * 1024  # what the tap queue may hold while the collector is away
# RabbitMQ bounds what it sends ahead by count only (prefetch), and aio-pika buffers it all:
# the count is set from the mean message size so that about PREFETCH_BYTES are in flight,
# between PREFETCH_MIN and PREFETCH_MAX messages (one 1 MB message still goes alone).
PREFETCH_BYTES = 32 * 1024 * 1024
PREFETCH_MIN, PREFETCH_MAX = 16, 10_000
PREFETCH_START = 1000
DISCOVERY_SECONDS = 10.0
STANDARD = {"amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic", "amq.headers": "headers",
            "amq.match": "headers"}
@dataclass
class ExchangeState:
    """How the tap covers one exchange (shown on the topics page beside NATS streams)."""
    name: str
    type: str
    observed: bool
    note: str = ""
    keys: frozenset = frozenset()

    @property
    def retention(self):  # the heartbeat's stream report reads it
        return self.type


TAP_SUFFIX = ".tap"


def tap_name():
    return OBSERVER + TAP_SUFFIX


class RabbitAdapter:
    def __init__(self, url, deliver, management_url=None, max_bytes=None, firehose=True, configured=()):
        self.url = url
        self.deliver = deliver
        self.vhost = vhost_of(url)
        self.api = Management.for_broker(url, management_url)
        self.max_bytes = max_bytes or TAP_MAX_BYTES
        self.want_firehose = firehose
        self.configured = dict(configured)  # exchange -> type, from the admin, for when the API is away
        self.firehose = False
        self.connection = self.channel = self.queue = None
        self.streams = {}  # exchange name -> ExchangeState
        self.kinds = {}  # exchange name -> type, for the topic of each message
        self.dead_bound = set()  # dead-letter exchanges bound beside the firehose
        self.counters = {"reconnects": 0, "ack_failures": 0, "header_errors": 0, "firehose": False,
                         "management_api": False}
        self._tasks = []
        self._consumer = None
        # Acks go out as one `multiple` ack up to the highest delivery tag below which every
        # message is committed (batches may commit out of order): on a quorum queue that
        # reads about three times as fast as one ack per message.
        self._ack_channel = None  # the channel the tags below belong to
        self._delivered = deque()  # delivery tags in delivery order, not yet acked
        self._settled = set()  # tags committed, waiting for the ones before them

    async def connect(self, stop):
        wait = 0.5
        while not stop.is_set():
            try:
                self.connection = await aio_pika.connect_robust(
                    self.url, client_properties={"connection_name": "eventscope-collector"})
                self.connection.reconnect_callbacks.add(self._reconnected)
                log.info("connected to RabbitMQ at %s", redact_url(self.url))
                return True
            except Exception as error:  # noqa: BLE001 - any failure to connect is retried the same way
                await self.close()
                log.warning("RabbitMQ connect failed (%s); retrying in %.1f s", redact_text(str(error)), wait)
                await pause(stop, wait)
                wait = min(30.0, wait * 2)
        return False

    async def start(self):
        self.channel = await self.connection.channel()
        self.prefetch, self._sizes = PREFETCH_START, [0, 0]  # [messages, bytes] since the last change
        await self.channel.set_qos(prefetch_count=self.prefetch)
        await self._declare_tap()
        self._tasks.append(asyncio.create_task(self._rediscover()))

    async def _declare_tap(self):
        try:
            self.queue = await self.channel.declare_queue(tap_name(), durable=True, arguments={
                "x-queue-type": "quorum", "x-max-length-bytes": self.max_bytes, "x-overflow": "drop-head"})
        except ChannelPreconditionFailed as error:
            # It exists with other arguments (an older bound, or one an operator set): keep
            # it as it is rather than never starting. The refusal closed the channel.
            log.warning("RabbitMQ tap queue %s kept with its own arguments: %s", tap_name(), error)
            self.channel = await self.connection.channel()
            await self.channel.set_qos(prefetch_count=self.prefetch)
            self.queue = await self.channel.declare_queue(tap_name(), passive=True)
        self.firehose, self.streams = False, {}
        await self._feed()
        self._consumer = asyncio.create_task(self._consume())

    async def _tap_deleted(self):
        """Someone deleted the tap queue (the broker cancels our consumer): declare and
        feed it again. What was published meanwhile went to no queue of ours: a gap."""
        try:
            found = await self.api.queue(self.vhost, tap_name())
            # How full the tap is: past its bound the oldest copies are dropped (a gap).
            held = int(found.get("message_bytes") or 0)
            self.counters["tap_bytes"], self.counters["tap_limit"] = held, self.max_bytes
            if held >= self.max_bytes * 0.9 and not self.counters.get("tap_full"):
                log.error("RabbitMQ tap queue %s holds %d of its %d bytes: past them the oldest copies are "
                          "dropped", tap_name(), held, self.max_bytes)
            self.counters["tap_full"] = held >= self.max_bytes * 0.9
            return False
        except ManagementError as error:
            if "HTTP 404" not in str(error):
                return False
        log.error("RabbitMQ tap queue %s was deleted; declaring it again (messages published meanwhile are "
                  "not stored)", tap_name())
        self._consumer.cancel()
        await self._declare_tap()
        self.counters["tap_redeclared"] = self.counters.get("tap_redeclared", 0) + 1  # and fed again
        return True

    async def _feed(self):
        """The firehose if it can be turned on, else a binding per exchange. The tap queue
        outlives the collector with its bindings: those of the other way are removed, so
        no message comes in twice."""
        if self.want_firehose and await self._firehose_on():
            if not self.firehose:
                await self.queue.bind(TRACE_EXCHANGE, "publish.#")
                self.firehose = True
                self.counters["firehose"] = True
            for binding in await self.api.bindings(self.vhost):
                if binding.get("destination") == tap_name() and binding.get("source") not in ("", TRACE_EXCHANGE):
                    await self.queue.unbind(binding["source"], binding.get("routing_key", ""),
                                            arguments=binding.get("arguments") or None)
            await self._discover(bind=False)
        else:
            await self.queue.unbind(TRACE_EXCHANGE, "publish.#")
            await self._discover(bind=True)

    async def _firehose_on(self):
        try:
            await self.api.trace_on(self.vhost)
            self.counters["management_api"] = True
            return True
        except ManagementError as error:
            self.counters["management_api"] = False
            log.warning("RabbitMQ firehose not turned on (%s); binding the tap to each exchange instead", error)
            return False

    async def _reconnected(self, *_):
        self.counters["reconnects"] += 1
        log.info("RabbitMQ reconnected")
        if self.firehose:
            # The firehose is off after a broker restart: on again before anything is missed
            # for long (the tap's own bindings are restored by the robust connection).
            await self._firehose_on()

    async def _rediscover(self):
        while True:
            await asyncio.sleep(DISCOVERY_SECONDS)
            try:
                if await self._tap_deleted():
                    continue
                await self._discover(bind=not self.firehose)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a reconnect in progress, an API hiccup: the next round tries again
                log.warning("RabbitMQ exchange discovery failed: %s", error)

    async def _exchanges(self):
        """[(name, type)], {exchange: direct keys bound} and the dead-letter exchanges
        (named by queue arguments or policies): from the management API, else the
        standard exchanges only."""
        try:
            exchanges = await self.api.exchanges(self.vhost)
            bindings = await self.api.bindings(self.vhost)
            queues = await self.api.queues(self.vhost)
            self.counters["management_api"] = True
        except ManagementError:
            self.counters["management_api"] = False
            return list({**STANDARD, **self.configured}.items()), {}, set()
        keys = {}
        for binding in bindings:
            if binding.get("destination") != tap_name():
                keys.setdefault(binding["source"], set()).add(binding.get("routing_key", ""))
        dead = set()
        for queue in queues:
            named = (queue.get("arguments") or {}).get("x-dead-letter-exchange")
            policy = (queue.get("effective_policy_definition") or {}).get("dead-letter-exchange")
            dead.update(name for name in (named, policy) if name)
        return [(e["name"], e["type"]) for e in exchanges], keys, dead

    async def _discover(self, bind):
        exchanges, keys, dead = await self._exchanges()
        self.kinds = {(name or DEFAULT_EXCHANGE): kind for name, kind in exchanges}
        for name, kind in exchanges:
            if name.startswith("amq.rabbitmq."):
                continue
            label = name or DEFAULT_EXCHANGE
            if self.firehose and name not in dead:
                self.streams[label] = ExchangeState(label, kind, True, "firehose")
                continue
            # Dead-lettering is no publish, so the firehose never sees it: a dead-letter
            # exchange is bound beside it (the copies a client publishes there come
            # through both ways; the bound one is dropped, see _consume).
            state = self.streams.get(label)
            if not name:
                self.streams[label] = ExchangeState(label, kind, False, "the default exchange cannot be bound; "
                                                    "only the firehose sees it (management API needed)")
                continue
            wanted = frozenset(keys.get(name, ())) if kind == "direct" else frozenset()
            if state is not None and state.observed and state.keys >= wanted and state.note != "firehose":
                continue
            self.streams[label] = await self._bind(name, kind, wanted, state)
            if name in dead:
                self.streams[label].note = "dead-letter exchange: " + self.streams[label].note
                if self.firehose:
                    self.dead_bound.add(label)

    async def _bind(self, name, kind, keys, state):
        if kind == "topic":
            await self.queue.bind(name, "#")
        elif kind == "fanout":
            await self.queue.bind(name, "")
        elif kind == "headers":
            await self.queue.bind(name, "", arguments={"x-match": "all"})
        elif kind == "direct":
            for key in keys - (state.keys if state else frozenset()):
                await self.queue.bind(name, key)
            return ExchangeState(name, kind, True, "bound with each key in use" if keys else
                                 "no key bound yet: nothing to copy", keys)
        else:
            return ExchangeState(name, kind, False, f"exchange type {kind} cannot be tapped by a binding")
        return ExchangeState(name, kind, True, "bound")

    async def _consume(self):
        """Read the tap until cancelled; a consumer the broker ended (the channel closed for
        good) is started again after a pause, never left dead."""
        while True:
            try:
                await self._read_tap()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - logged; unacked messages come again
                log.error("RabbitMQ tap consumer stopped (%s); starting it again in 1 s", error)
            await asyncio.sleep(1.0)

    async def _read_tap(self):
        async with self.queue.iterator() as messages:
            async for message in messages:
                now = datetime.now(UTC)
                token = self._delivered_on(message)
                if (self.firehose and message.exchange in self.dead_bound
                        and "x-death" not in (message.headers or {})):
                    # Bound to a dead-letter exchange beside the firehose: a client's own
                    # publish there is stored from the firehose's copy. (Copies the tap took
                    # through bindings before the firehose was on are stored as they come.)
                    self.counters["firehose_copies"] = self.counters.get("firehose_copies", 0) + 1
                    await self._settle([token])
                    continue
                try:
                    if message.exchange == TRACE_EXCHANGE:
                        raw = from_trace(message, now, self.kinds)
                    else:
                        raw = from_delivery(message, now, self.kinds)
                except Exception as error:  # noqa: BLE001 - kept raw with a note, never dropped
                    log.warning("RabbitMQ message not read (%s); stored as raw bytes", error)
                    raw = RawMessage(message.routing_key or "", message.exchange or DEFAULT_EXCHANGE,
                                     message_key(message.exchange or "", message.routing_key or "", {},
                                                 message.body, None),
                                     now, now, {"amqp-header-errors": str(error)}, message.body)
                if "amqp-header-errors" in (raw.headers or {}):
                    self.counters["header_errors"] += 1
                raw.token = token
                await self.deliver(raw)
                await self._fit_prefetch(len(message.body))

    async def _fit_prefetch(self, size):
        self._sizes[0] += 1
        self._sizes[1] += size
        if self._sizes[0] < 500:
            return
        mean = max(1, self._sizes[1] // self._sizes[0])
        self._sizes = [0, 0]
        wanted = max(PREFETCH_MIN, min(PREFETCH_MAX, PREFETCH_BYTES // mean))
        if wanted * 2 < self.prefetch or wanted > self.prefetch * 2 or (wanted < self.prefetch and mean > 64 * 1024):
            self.prefetch = wanted
            try:
                await self.channel.set_qos(prefetch_count=wanted)
            except Exception as error:  # noqa: BLE001 - the channel is reopened with the last setting
                log.info("RabbitMQ prefetch not changed: %s", error)

    def _delivered_on(self, message):
        channel = message.channel  # open: the message just came through it
        if channel is not self._ack_channel:
            # A new channel (a reconnect): the tags of the old one are void and their
            # messages come again.
            self._ack_channel, self._delivered, self._settled = channel, deque(), set()
        self._delivered.append(message.delivery_tag)
        return channel, message.delivery_tag

    async def ack(self, messages):
        await self._settle([raw.token for raw in messages])

    async def _settle(self, tokens):
        channel = self._ack_channel
        for owner, tag in tokens:
            if owner is channel:
                self._settled.add(tag)
            else:
                self.counters["ack_failures"] += 1  # its channel closed: it is redelivered
        floor = None
        while self._delivered and self._delivered[0] in self._settled:
            floor = self._delivered.popleft()
            self._settled.discard(floor)
        if floor is None or channel is None:
            return
        try:
            await channel.basic_ack(floor, multiple=True)
        except Exception:  # noqa: BLE001 - the channel closed meanwhile: those messages are redelivered
            self.counters["ack_failures"] += 1

    async def close(self):
        tasks = [task for task in (self._consumer, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        self._tasks, self._consumer, self._ack_channel = [], None, None
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
        await self.api.close()


def adapter_for(broker, deliver, pending_bytes):
    from django.conf import settings

    own = broker.url == settings.RABBITMQ_URL
    return RabbitAdapter(broker.url, deliver, settings.RABBITMQ_MANAGEMENT_URL if own else None,
                         firehose=settings.RABBITMQ_FIREHOSE, configured=configured_exchanges(broker.exchanges))


def configured_exchanges(text):
    """[(name, type)] from the admin's lines `name type` (type topic when left out); a line
    of an unknown type is skipped with a warning."""
    found = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        kind = parts[1] if len(parts) > 1 else "topic"
        if kind not in ("topic", "fanout", "direct", "headers"):
            log.warning("exchange %s in the admin: type %r cannot be tapped; left out", parts[0], kind)
            continue
        found.append((parts[0], kind))
    return found
