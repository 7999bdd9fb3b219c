"""The shop's services. Each instance has its own NATS connection and its own TracerProvider.

    order.created (v1, v2) ─▶ payment ─▶ payment.succeeded ─▶ shipping ─▶ shipments (Go Micro topic)
            │                   │        payment.failed         └─▶ order.cancelled (saga compensation)
            └─▶ inventory (slow)└─ naks until max deliveries
    payment.* and shipments ─▶ notification ─▶ email.requested ─▶ mailer ─▶ email.requested.dlq

Which orders fail is decided by their number through `spread`, so any run of orders fails in the
configured proportion and a test knows the outcome without waiting for luck.
"""
import asyncio
import logging
import math
import socket
import uuid
from datetime import datetime, timezone

from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, Status, StatusCode

from demo import telemetry, wire

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0
DECLINE_FRACTION = 0.15  # of the payments that go through, the share with a declined card
PRICES = {"mug": 12.0, "tee": 25.0, "poster": 18.5, "tote": 9.9}
MULTIPLIERS = {"gateway": (math.sqrt(5) - 1) / 2, "decline": math.sqrt(3) % 1, "bounce": math.sqrt(2) % 1}


def spread(number, purpose):
    """A point in [0, 1) for an order number. Successive numbers fill the interval evenly (a Weyl
    sequence), so `spread(n, p) < f` picks a fraction f of any run of orders, not just on average."""
    return (number * MULTIPLIERS[purpose]) % 1.0


class ProcessingError(Exception):
    """A delivery that failed and should come back later."""


class Warehouse:
    """The stock that shipping takes from and inventory puts back, shared like a database table."""

    def __init__(self, shelf):
        self.shelf = shelf
        self.units = dict.fromkeys(PRICES, shelf)

    def reserve(self, sku, quantity):
        if self.units.get(sku, 0) < quantity:
            return False
        self.units[sku] -= quantity
        return True

    def restock(self, sku, quantity):
        self.units[sku] = min(self.shelf, self.units.get(sku, 0) + quantity)


def new_event(event_type, body, producer, version=1):
    return wire.Event(type=event_type, body=body, id=str(uuid.uuid4()), producer=producer, version=version)


class Service:
    name = ""
    version = "1.0.0"
    jaeger_header = False  # older instrumentation also sends Jaeger's uber-trace-id
    publishes = ()  # logical subjects, announced in the registration
    subscribes = ()  # (logical stream, logical subject, handler method name)
    max_ack_pending = 1000

    def __init__(self, shop, exporter):
        self.shop = shop
        self.config = shop.config
        self.instance_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.provider = telemetry.make_provider(self.name, self.version, self.instance_id, exporter, self.config)
        self.tracer = self.provider.get_tracer("demo.shop", self.version)
        self.nc = self.js = None
        self.subscriptions = []

    @property
    def max_deliver(self):
        return -1  # keep redelivering: only payment lets JetStream give up

    @property
    def ack_wait(self):
        return 30.0

    async def start(self):
        self.nc = await self.shop.connect(self.instance_id)
        self.js = self.nc.jetstream()
        # Registration before subscribing: Go Micro registers a service before it serves.
        await asyncio.wait_for(await self.announce("create"), PUBLISH_TIMEOUT)
        for stream_name, logical, method in self.subscribes:
            stream, subject = self.shop.names.stream(stream_name), self.shop.names.actual(logical)
            await self.shop.ensure_consumer(stream, self.consumer_config(subject))
            callback = self.on_message(getattr(self, method))
            self.subscriptions.append(
                await self.js.subscribe(subject, queue=self.name, stream=stream, cb=callback, manual_ack=True)
            )

    async def stop(self):
        for subscription in self.subscriptions:
            await subscription.unsubscribe()
        try:
            await asyncio.wait_for(await self.announce("delete"), 2)
        except Exception as error:
            log.warning("%s could not deregister: %s", self.instance_id, error)
        await self.nc.close()

    def consumer_config(self, subject):
        # Go Micro's natsjs convention: a queue subscription whose durable name is the service name.
        return ConsumerConfig(
            durable_name=self.name,
            deliver_group=self.name,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
        )

    def registration(self, action):
        names = self.shop.names
        endpoints = [
            {
                "name": f"{type(self).__name__}.{method}",
                "metadata": {"subscriber": "true", "topic": names.actual(logical), "queue": self.name},
            }
            for _stream, logical, method in self.subscribes
        ]
        service = {
            "name": self.name,
            "version": self.version,
            "metadata": {"publishes": ",".join(names.actual(logical) for logical in self.publishes)},
            "endpoints": endpoints,
            "nodes": [{"id": self.instance_id, "address": socket.gethostname(), "metadata": {"broker": "nats"}}],
        }
        return {"action": action, "service": service}

    async def announce(self, action):
        event_type = "service.registered" if action == "create" else "service.deregistered"
        event = new_event(event_type, self.registration(action), self.name)
        return await self.publish("service.events", event, wire.GOMICRO_EVENTS)

    async def publish(self, logical, event, preferred_format):
        """Publish under a PRODUCER span; returns the future of JetStream's acknowledgement."""
        subject = self.shop.names.actual(logical)
        attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.operation": "publish",
            "messaging.message.id": event.id,
        }
        with self.tracer.start_as_current_span(f"publish {subject}", kind=SpanKind.PRODUCER, attributes=attributes):
            trace_headers = telemetry.inject(self.jaeger_header)
            payload, headers = wire.encode(self.shop.format_for(preferred_format), subject, event, trace_headers)
            return await self.shop.send(self.js, subject, payload, headers)

    def on_message(self, handle):
        async def callback(msg):
            try:
                await self.process(msg, handle)
            except Exception:  # a bug in one handler must not end the subscription
                log.exception("%s failed on a message from %s", self.name, msg.subject)
                await msg.nak(delay=self.config.retry_delay)
            # A subscription otherwise works through its whole backlog in one go, and the order
            # loop could not keep its rate: one message per turn of the event loop.
            await asyncio.sleep(0)

        return callback

    async def process(self, msg, handle):
        stats = self.shop.stats
        try:
            event = wire.decode(msg.data, msg.headers)
        except wire.DecodeError as error:
            log.warning("%s terminated an undecodable message on %s: %s", self.name, msg.subject, error)
            stats.failures += 1
            await msg.term()
            return
        attempt = msg.metadata.num_delivered
        parent = telemetry.extract(event.carrier)
        # Both a child (the trace stays one tree) and a link (the OpenTelemetry messaging convention).
        context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent.is_valid else None
        attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": msg.subject,
            "messaging.operation": "process",
            "messaging.message.id": event.id,
            "messaging.consumer.group.name": self.name,
            "messaging.nats.delivery_count": attempt,
        }
        with self.tracer.start_as_current_span(
            f"process {msg.subject}",
            context=context,
            kind=SpanKind.CONSUMER,
            links=[Link(parent)] if parent.is_valid else [],
            attributes=attributes,
        ) as span:
            try:
                futures = await handle(event, msg)
            except ProcessingError as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                stats.failures += 1
                if attempt >= self.max_deliver > 0:
                    stats.exhausted += 1
                await msg.nak(delay=self.config.retry_delay)
                return
        stats.processed[self.name] += 1
        self.shop.spawn(self.ack_when_published(msg, futures))

    async def ack_when_published(self, msg, futures):
        """Ack only once what the handler published is stored, so a crash in between redelivers."""
        try:
            # No timeout of our own: a publish acknowledgement that never comes leaves the message
            # unacknowledged, and JetStream redelivers it after ack_wait.
            for future in futures:
                await future
            await msg.ack()
        except Exception as error:
            log.warning("%s could not publish for %s: %s", self.name, msg.subject, error)
            if not self.nc.is_closed:
                await msg.nak(delay=self.config.retry_delay)

    def recent(self, event):
        """Failures last only a while, so a retry from the dead-letter page later succeeds."""
        window = max(60.0, 4 * self.config.max_deliver * self.config.retry_delay)
        return (datetime.now(timezone.utc) - event.time).total_seconds() < window


class Order(Service):
    """The storefront. Its v2 instances renamed `item` to `sku` and added `currency`."""

    name = "order"
    publishes = ("order.created",)

    def __init__(self, shop, exporter, event_version):
        self.event_version = event_version
        self.version = f"{event_version}.0.0"
        self.jaeger_header = event_version == 1
        super().__init__(shop, exporter)

    def order_body(self, number):
        sku = list(PRICES)[number % len(PRICES)]
        quantity = 1 + number % 3
        body = {
            "order_id": str(uuid.uuid4()),
            "number": number,
            "customer_id": f"cus-{number % 97:03d}",
            "quantity": quantity,
            "amount": round(quantity * PRICES[sku], 2),
        }
        if self.event_version == 1:
            body["item"] = sku
        else:
            body.update(sku=sku, currency="EUR")
        return body

    async def place(self, number):
        attributes = {"http.request.method": "POST", "http.route": "/orders"}
        with self.tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER, attributes=attributes):
            event = new_event("order.created", self.order_body(number), self.name, self.event_version)
            return await self.publish("order.created", event, wire.ENVELOPE)


def order_line(body):
    """The fields every later step needs, from either version of order.created."""
    return {
        "order_id": body["order_id"],
        "number": body["number"],
        "customer_id": body["customer_id"],
        "sku": body.get("sku") or body.get("item"),
        "quantity": body["quantity"],
        "amount": body["amount"],
        "currency": body.get("currency", "EUR"),
    }


class Payment(Service):
    name = "payment"
    version = "1.3.0"
    jaeger_header = True
    publishes = ("payment.succeeded", "payment.failed")
    subscribes = (("ORDERS", "order.created", "charge"),)

    @property
    def max_deliver(self):
        return self.config.max_deliver

    async def charge(self, event, msg):
        line = order_line(event.body)
        if spread(line["number"], "gateway") < self.config.fail_fraction and self.recent(event):
            raise ProcessingError("payment gateway timed out")
        if spread(line["number"], "decline") < DECLINE_FRACTION:
            failed = new_event("payment.failed", {**line, "reason": "card declined"}, self.name)
            return [await self.publish("payment.failed", failed, wire.CLOUDEVENTS_BINARY)]
        paid = new_event("payment.succeeded", {**line, "payment_id": str(uuid.uuid4())}, self.name)
        if self.shop.kafka is not None:
            await self.shop.kafka.payment(paid)
        return [await self.publish("payment.succeeded", paid, wire.CLOUDEVENTS_STRUCTURED)]


class Inventory(Service):
    """Puts stock back for every order it sees, slowly: its consumer lags when orders surge."""

    name = "inventory"
    subscribes = (("ORDERS", "order.created", "replenish"),)

    def __init__(self, shop, exporter):
        super().__init__(shop, exporter)
        # Few messages in flight, so the backlog stays in the stream where lag is measured.
        self.max_ack_pending = 8 if self.config.slow_delay > 0 else 1000

    @property
    def ack_wait(self):
        return max(30.0, 4 * self.max_ack_pending * self.config.slow_delay)

    async def replenish(self, event, msg):
        line = order_line(event.body)
        if self.config.slow_delay > 0:
            await asyncio.sleep(self.config.slow_delay)
        self.shop.warehouse.restock(line["sku"], line["quantity"])
        return []


class Shipping(Service):
    """The saga's last step: reserve stock for a paid order, or cancel the order when there is none."""

    name = "shipping"
    version = "1.1.0"
    publishes = ("shipments", "order.cancelled")
    subscribes = (("PAYMENTS", "payment.succeeded", "ship"),)

    async def ship(self, event, msg):
        line = order_line(event.body)
        if self.shop.warehouse.reserve(line["sku"], line["quantity"]):
            shipment = new_event("shipment.created", {**line, "carrier": "parcelpost"}, self.name)
            return [await self.publish("shipments", shipment, wire.GOMICRO_EVENTS)]
        cancelled = new_event("order.cancelled", {**line, "reason": "out of stock"}, self.name)
        return [await self.publish("order.cancelled", cancelled, wire.CLOUDEVENTS_BINARY)]


class Notification(Service):
    name = "notification"
    version = "0.9.0"
    publishes = ("email.requested",)
    subscribes = (("PAYMENTS", "payment.*", "notify"), ("shipments", "shipments", "notify"))
    templates = {"payment.succeeded": "receipt", "payment.failed": "payment-declined", "shipment.created": "shipped"}

    async def notify(self, event, msg):
        template = self.templates.get(event.type, "generic")
        body = {
            "order_id": event.body.get("order_id"),
            "number": event.body.get("number"),
            "to": f"{event.body.get('customer_id', 'someone')}@shop.example",
            "template": template,
        }
        email = new_event("email.requested", body, self.name)
        return [await self.publish("email.requested", email, wire.GOMICRO_BROKER)]


class Mailer(Service):
    """Retries a bounce itself, then moves the message to `<topic>.dlq` with the error in headers."""

    name = "mailer"
    subscribes = (("EMAIL", "email.requested", "send"),)

    async def send(self, event, msg):
        number = event.body.get("number") or 0
        if not (spread(number, "bounce") < self.config.fail_fraction and self.recent(event)):
            return []
        error = "550 mailbox unavailable"
        attempts = msg.metadata.num_delivered
        if attempts < self.config.max_deliver:
            raise ProcessingError(error)
        trace.get_current_span().set_status(Status(StatusCode.ERROR, error))
        return [await self.dead_letter(msg, error, attempts)]

    async def dead_letter(self, msg, error, attempts):
        subject = f"{msg.subject}.dlq"
        attributes = {
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.operation": "publish",
        }
        with self.tracer.start_as_current_span(f"publish {subject}", kind=SpanKind.PRODUCER, attributes=attributes):
            headers = dict(msg.headers or {})
            headers.update(telemetry.inject(self.jaeger_header))
            headers.update({
                "X-Original-Topic": msg.subject,
                "X-Error": error,
                "X-Attempts": str(attempts),
                "X-Failed-Service": self.name,
                # Derived from the original id: a redelivery after a crash cannot dead-letter it twice.
                "Nats-Msg-Id": f"{headers.get('Nats-Msg-Id', msg.metadata.sequence.stream)}.dlq",
            })
            return await self.shop.send(self.js, subject, msg.data, headers)
