"""RabbitMQ queues as lag readings, from the management API (every call of the sampler
to RabbitMQ is here). A queue is a consumer of its vhost: `stream` = vhost, `name` = queue,
shown at /consumers/<vhost>/<queue>/?broker=<name> (vhost `/` written `%2F`).

Lag = ready + unacknowledged; the delivered and acked counters of the queue's message
stats stand for the delivered sequence and the ack floor (they start again when the queue
is recreated, which the sampler reports as a reset). RabbitMQ keeps no per-message
sequence, so the oldest unprocessed message's age is the queue's head message timestamp
where the broker gives it (messages published with a timestamp property), else unknown.

Each reading's config carries the topology contract: `topics` (exact topic names, as the
tap stores them, the queue receives through its bindings), `instances` (consumer count),
`group` (the consuming service where it is not the queue's name), `routing`
("load-balanced": one queue shared by its consumers; "broadcast": one queue per
consumer bound to a fanout), and the raw `bindings`.
"""
import logging

from channels.db import database_sync_to_async

from collector.brokers.rabbitmq import TAP_SUFFIX, subject_for
from collector.brokers.rabbitmq_api import ManagementError
from collector.ingest.subjects import any_match
from collector.lag.reading import ConsumerReading, ReadError, StreamReading, parse_time

KIND = "rabbitmq"
log = logging.getLogger("eventscope.lag")


class RabbitSource:
    kind = KIND

    def __init__(self, api, vhost, broker_id, connection=None):
        self.api = api
        self.vhost = vhost
        self.broker_id = broker_id
        self.connection = connection  # the tap's AMQP connection, for what AMQP alone gives
        self.heads = {}  # queue -> head message time of the last read
        self.amqp_only = ""  # why the management API was not used this round

    async def streams(self):
        try:
            queues = await self.api.queues(self.vhost)
            self.amqp_only = ""
        except ManagementError as error:
            if self.connection is None:
                raise ReadError(f"RabbitMQ management API: {error} (AMQP alone gives no unacked counts)") from error
            self.amqp_only, queues = str(error), None
        self._queues = queues
        return [StreamReading(self.vhost, 0, 0, sum(q.get("messages") or 0 for q in queues or ()), "queue", True)]

    async def all_consumers(self, names):
        try:
            readings = await (self._amqp_readings() if self._queues is None else self._readings())
        except ManagementError as error:
            return {self.vhost: ReadError(str(error))}
        return {self.vhost: readings}

    async def _amqp_readings(self):
        """Without the management API: the queues sampled before, each by a passive declare,
        which gives ready messages and consumers only; each reading says so."""
        known = await database_sync_to_async(_known_queues)(self.broker_id, self.vhost)
        readings = []
        for name, config in known:
            try:
                channel = await self.connection.channel()  # a refused declare closes its channel
                try:
                    declared = await channel.declare_queue(name, passive=True)
                finally:
                    if not channel.is_closed:
                        await channel.close()
            except Exception as error:  # noqa: BLE001 - gone (or unreachable): not in this round's readings
                log.info("queue %s not read over AMQP: %s", name, error)
                continue
            result = declared.declaration_result
            config = {**config, "instances": result.consumer_count, "source": "amqp",
                      "note": f"management API unreachable ({self.amqp_only}): AMQP gives ready messages and "
                              f"consumers only, no unacknowledged count, rates or utilisation"}
            readings.append(ConsumerReading(
                stream=self.vhost, name=name, created=None, config=config, pending=result.message_count,
                ack_pending=0, redelivered=0, waiting=0, delivered_seq=0, delivered_consumer_seq=0,
                ack_floor_seq=0, ack_floor_consumer_seq=0, last_active=None, delivered_active=None,
                observer=name.endswith(TAP_SUFFIX)))
        return readings

    async def _readings(self):
        bindings = await self.api.bindings(self.vhost)
        exchanges = {e["name"]: e["type"] for e in await self.api.exchanges(self.vhost)}
        consumers = await self.api.consumers(self.vhost)
        services = await self._services()
        topics = await database_sync_to_async(_known_topics)(self.broker_id)
        by_queue, holders = {}, {}
        for binding in bindings:
            if binding.get("destination_type") == "queue":
                by_queue.setdefault(binding["destination"], []).append(binding)
        for consumer in consumers:
            queue = (consumer.get("queue") or {}).get("name")
            connection = (consumer.get("channel_details") or {}).get("connection_name")
            holders.setdefault(queue, set()).add(services.get(connection) or "")
        readings = []
        for queue in self._queues:
            name = queue["name"]
            own = by_queue.get(name, [])
            config = _config(queue, own, exchanges, topics, holders.get(name, set()))
            stats = queue.get("message_stats") or {}
            delivered, acked = int(stats.get("deliver_get") or 0), int(stats.get("ack") or 0)
            readings.append(ConsumerReading(
                stream=self.vhost, name=name, created=None, config=config,
                pending=int(queue.get("messages_ready") or 0),
                ack_pending=int(queue.get("messages_unacknowledged") or 0),
                redelivered=int(stats.get("redeliver") or 0), waiting=0,
                delivered_seq=delivered, delivered_consumer_seq=delivered, ack_floor_seq=acked,
                ack_floor_consumer_seq=acked, last_active=_idle_since(queue),
                delivered_active=None, observer=name.endswith(TAP_SUFFIX),
            ))
            head = queue.get("head_message_timestamp")
            self.heads[name] = head
        return readings

    async def _services(self):
        """{connection name: the service that named its connection}."""
        try:
            connections = await self.api.connections()
        except ManagementError:
            return {}
        found = {}
        for connection in connections:
            properties = connection.get("client_properties") or {}
            label = properties.get("connection_name") or ""
            if label:
                found[connection.get("name")] = label
        return found

    async def next_message(self, stream, after_seq, subjects):
        return None  # no per-message sequence: see the module docstring


def _idle_since(queue):
    """When the queue last saw activity (RabbitMQ writes `2026-11-30 15:20:01`, UTC)."""
    text = queue.get("idle_since") or ""
    return parse_time(text.replace(" ", "T", 1) + ("" if text.endswith("Z") or "+" in text else "Z"))


def _known_queues(broker_id, vhost):
    from collector.models import Consumer

    return list(Consumer.objects.filter(broker_id=broker_id, stream=vhost, kind=KIND, gone_at__isnull=True)
                .values_list("name", "config"))


def _known_topics(broker_id):
    from collector.models import Topic

    found = {}
    for stream, name in Topic.objects.filter(broker_id=broker_id).values_list("stream", "name"):
        found.setdefault(stream, set()).add(name)
    return found


def _config(queue, bindings, exchanges, known, services):
    topics, raw, fanout = set(), [], False
    for binding in bindings:
        source, key = binding.get("source", ""), binding.get("routing_key", "")
        raw.append({"exchange": source, "routing_key": key, "arguments": binding.get("arguments") or {}})
        kind = exchanges.get(source, "direct") if source else "direct"
        if not source:
            # Every queue is bound to the default exchange by its name: a topic only once
            # the tap stored messages sent that way.
            if key in known.get("amq.default", ()):
                topics.add(key)
        elif kind in ("fanout", "headers"):
            topics.add(subject_for(source, key, kind))
            fanout = fanout or kind == "fanout"
        elif kind == "topic":
            pattern = _nats_pattern(key)
            topics.update(name for name in known.get(source, ()) if any_match([pattern], name))
            if not any(ch in key for ch in "*#"):
                topics.add(key)
        else:
            topics.add(key)
    instances = int(queue.get("consumers") or 0)
    services.discard("")
    group = next(iter(services)) if len(services) == 1 else ""
    broadcast = fanout and instances <= 1 and (queue.get("exclusive") or queue.get("auto_delete")
                                               or bool(group and group != queue["name"]))
    config = {
        "topics": sorted(topics), "instances": instances, "routing": "broadcast" if broadcast else "load-balanced",
        "bindings": raw, "queue_type": (queue.get("arguments") or {}).get("x-queue-type", queue.get("type", "classic")),
        "durable": queue.get("durable"), "utilisation": queue.get("consumer_utilisation"),
        "ack_policy": "explicit",
    }
    if group and group != queue["name"]:
        config["group"] = group
    return config


def _nats_pattern(key):
    """An AMQP topic binding key as a NATS pattern for `any_match`: `*` is one word in both,
    `#` (zero or more words) is taken as `>` at the end; elsewhere as `*` (approximate)."""
    words = key.split(".")
    return ".".join(">" if word == "#" and index == len(words) - 1 else ("*" if word == "#" else word)
                    for index, word in enumerate(words))
