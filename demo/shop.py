"""Runs the shop: streams, services, the flow of orders, draining and a clean stop."""
import asyncio
import contextlib
import logging
import math
import os
import signal
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

import nats
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from collector.secrets import redact_url
from demo import telemetry
from demo.config import DemoConfig, Names
from demo.services import Inventory, Mailer, Notification, Order, Payment, Shipping, Warehouse

log = logging.getLogger(__name__)

# Logical stream name -> logical subjects. Domain streams take one token after the domain
# (`order.*`, not `order.>`) so that `<topic>.dlq` subjects belong to the DLQ stream alone:
# JetStream refuses two streams whose subjects overlap, and (2.10+) any stream whose subjects
# could match its own API (`$JS.API.>`), so the DLQ stream names its domains.
STREAMS = {
    "ORDERS": ["order.*"],
    "PAYMENTS": ["payment.*"],
    "EMAIL": ["email.*"],
    "SERVICES": ["service.*"],
    "DLQ": ["order.*.dlq", "payment.*.dlq", "email.*.dlq", "service.*.dlq"],
    # Go Micro's natsjs makes one stream per topic, named after the topic, over that subject only.
    "shipments": ["shipments"],
}
SERVICE_CLASSES = (Order, Payment, Inventory, Shipping, Notification, Mailer)
WAVE_AMPLITUDE = 0.8  # order traffic swings between 20 % and 180 % of the mean rate
STATUS_EVERY = 10.0
ORDER_BATCH = 200  # orders placed before the order loop lets other tasks run


@dataclass
class DemoStats:
    published: Counter = field(default_factory=Counter)  # acknowledged publishes per logical subject
    processed: Counter = field(default_factory=Counter)  # handled deliveries per service
    failures: int = 0  # deliveries that failed and were nak'd (or terminated)
    exhausted: int = 0  # failed deliveries that were the last allowed: JetStream gives up on them
    dlq: int = 0  # messages moved to a `.dlq` subject
    publish_errors: int = 0
    orders: int = 0  # orders placed
    drained: bool = False
    elapsed: float = 0.0
    rabbitmq: dict = field(default_factory=dict)  # the mail over RabbitMQ: relayed, sent, bounced, audited


def expected_orders(config, seconds):
    """Orders due after `seconds`: the integral of a rate that rises and falls around its mean."""
    period = config.wave_period
    if period <= 0:
        return config.rate * seconds
    swing = WAVE_AMPLITUDE * period / (2 * math.pi) * (1 - math.cos(2 * math.pi * seconds / period))
    return config.rate * (seconds + swing)


class Shop:
    def __init__(self, config):
        self.config = config
        self.names = Names(config.namespace)
        self.stats = DemoStats()
        self.warehouse = Warehouse(config.initial_stock)
        self.pending = set()  # publish acknowledgements not yet received
        self.tasks = set()
        self.nc = self.js = None
        self.kafka = None  # demo.kafka_leg.KafkaLeg, with KAFKA_BOOTSTRAP_SERVERS set

    def format_for(self, preferred):
        return preferred if preferred in self.config.formats else self.config.formats[0]

    async def connect(self, name):
        options = {"servers": self.config.nats_url.split(","), "name": name, "error_cb": self.on_nats_error}
        creds, ca = os.environ.get("NATS_CREDS"), os.environ.get("NATS_TLS_CA")
        if creds:
            options["user_credentials"] = creds
        if ca:
            options["tls"] = ssl.create_default_context(cafile=ca)
        return await nats.connect(**options)

    async def on_nats_error(self, error):
        log.warning("NATS: %s", error)

    async def open(self):
        self.nc = await self.connect("shop-admin")
        self.js = self.nc.jetstream()
        for name, subjects in STREAMS.items():
            await self.ensure_stream(self.names.stream(name), [self.names.actual(s) for s in subjects])
        if self.config.kafka_bootstrap:
            from demo.kafka_leg import KafkaLeg

            self.kafka = KafkaLeg(self, self.config.kafka_bootstrap)
            await self.kafka.start()

    async def ensure_stream(self, name, subjects):
        """Create the stream, or bring an existing one to this configuration. Idempotent."""
        config = StreamConfig(
            name=name,
            subjects=subjects,
            # Bounded by count and age, not bytes: JetStream reserves a stream's max_bytes up front.
            max_age=24 * 3600,
            max_msgs=1_000_000,
            discard=DiscardPolicy.OLD,
        )
        try:
            await self.js.add_stream(config)
            return
        except BadRequestError:
            pass  # it exists with other settings, or other streams hold the subjects
        try:
            await self.js.update_stream(config)
        except (BadRequestError, NotFoundError) as error:
            try:
                current = (await self.js.stream_info(name)).config
            except NotFoundError:
                raise RuntimeError(f"stream {name} over {subjects} cannot be created: {error.description}") from None
            if sorted(current.subjects or []) != sorted(subjects):
                raise RuntimeError(f"stream {name} exists over {current.subjects}, not {subjects}") from None
            log.warning("using stream %s as it is (%s)", name, error.description)

    async def ensure_consumer(self, stream, config):
        """Create the durable consumer, or update one left by an earlier run with other settings."""
        try:
            current = (await self.js.consumer_info(stream, config.durable_name)).config
        except NotFoundError:
            config.deliver_subject = self.nc.new_inbox()
            await self.js.add_consumer(stream, config)
            return
        same = (
            current.filter_subject == config.filter_subject
            and current.deliver_group == config.deliver_group
            and current.max_deliver == config.max_deliver
            and current.max_ack_pending == config.max_ack_pending
            and abs((current.ack_wait or 0) - config.ack_wait) < 0.001
        )
        if same:
            return
        config.deliver_subject = current.deliver_subject
        try:
            await self.js.add_consumer(stream, config)
        except BadRequestError:
            # Not every field can change in place (the filter, before NATS 2.10): start it afresh.
            await self.js.delete_consumer(stream, config.durable_name)
            config.deliver_subject = self.nc.new_inbox()
            await self.js.add_consumer(stream, config)

    async def send(self, js, subject, payload, headers):
        """Publish without waiting for the acknowledgement; its future is counted when it lands."""
        future = await js.publish_async(subject, payload, headers=headers)
        logical = self.names.logical(subject)
        self.pending.add(future)

        def landed(done):
            self.pending.discard(done)
            if done.cancelled() or done.exception() is not None:
                self.stats.publish_errors += 1
                return
            self.stats.published[logical] += 1
            if logical.endswith(".dlq"):
                self.stats.dlq += 1

        future.add_done_callback(landed)
        return future

    def spawn(self, coroutine):
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def build_services(self):
        """(order instances, other services). Services take the exporters in turn, so each receiver
        gets traffic."""
        exporters = self.config.exporters
        exporter_of = {
            cls: exporters[i % len(exporters)] if exporters else None for i, cls in enumerate(SERVICE_CLASSES)
        }
        instances = self.config.order_instances
        orders = [Order(self, exporter_of[Order], 1 if i < (instances + 1) // 2 else 2) for i in range(instances)]
        others = [cls(self, exporter_of[cls]) for cls in SERVICE_CLASSES if cls is not Order]
        return orders, others

    async def take_orders(self, orders, stop):
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_status = started
        tick = min(0.1, max(0.005, 1 / self.config.rate))
        count, duration = self.config.count, self.config.duration
        while not stop.is_set():
            elapsed = loop.time() - started
            if duration is not None and elapsed >= duration:
                break
            due = int(expected_orders(self.config, elapsed)) + 1
            if count is not None:
                due = min(due, count)
            for _ in range(min(due - self.stats.orders, ORDER_BATCH)):
                self.stats.orders += 1
                number = self.stats.orders
                await orders[number % len(orders)].place(number)
            if count is not None and self.stats.orders >= count:
                break
            if loop.time() - last_status >= STATUS_EVERY:
                last_status = loop.time()
                self.log_status()
            if self.stats.orders < due:
                await asyncio.sleep(0)  # behind schedule: let consumers and acknowledgements run first
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    async def backlog(self):
        """What is still under way: {what: how many}, without the zeros."""
        backlog = {"publishes awaiting acknowledgement": len(self.pending), "acks awaiting publishes": len(self.tasks)}
        # A message stays unacknowledged until what its handler published is stored, so these
        # counts also cover work that is half done.
        for cls in SERVICE_CLASSES:
            for stream_name, _subject, _method in cls.subscribes:
                stream, durable = self.names.stream(stream_name), cls.name
                info = await self.js.consumer_info(stream, durable)
                backlog[f"{stream}/{durable}"] = info.num_pending + info.num_ack_pending
        return {what: count for what, count in backlog.items() if count}

    async def drain(self, stop):
        """Wait until every consumer has nothing pending or unacknowledged (twice in a row)."""
        deadline = time.monotonic() + self.config.drain_timeout
        quiet, backlog = 0, {}
        while time.monotonic() < deadline and not stop.is_set():
            backlog = await self.backlog()
            log.debug("draining: %s", backlog)
            quiet = 0 if backlog else quiet + 1
            if quiet >= 2:
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        log.warning("the pipeline did not drain within %.0f s: %s", self.config.drain_timeout, backlog)
        return False

    def log_status(self):
        stats = self.stats
        log.info(
            "%d orders, %d published, %d failed deliveries, %d gave up, %d to DLQ",
            stats.orders, sum(stats.published.values()), stats.failures, stats.exhausted, stats.dlq,
        )

    async def close(self, services):
        if self.pending:
            await asyncio.wait(list(self.pending), timeout=2)
        for service in services:
            if service.nc is not None:
                with contextlib.suppress(Exception):
                    await service.stop()
        for task in list(self.tasks):
            task.cancel()
        if self.kafka is not None:
            await self.kafka.stop()
        if self.nc is not None:
            await self.nc.close()
        await asyncio.gather(*(asyncio.to_thread(telemetry.shutdown, s.provider) for s in services))


@contextlib.contextmanager
def signals_set(stop):
    """SIGTERM and SIGINT set `stop` while the shop runs (where the loop can take signal handlers)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run(config: DemoConfig, stop: asyncio.Event | None = None) -> DemoStats:
    """Run the shop until `count` orders or `duration` seconds have passed (then drain), or `stop` is set.

    With no `stop` event given, SIGTERM and SIGINT stop it."""
    own_stop = stop is None
    stop = stop or asyncio.Event()
    shop = Shop(config)
    orders, others = shop.build_services()
    rabbit = None
    started = time.monotonic()
    with signals_set(stop) if own_stop else contextlib.nullcontext():
        try:
            await shop.open()
            # Consumers first, so the first orders find every subscriber in place.
            for service in others + orders:
                await service.start()
            if config.rabbitmq_url:
                from demo.rabbit import RabbitPart

                rabbit = RabbitPart(shop, config.rabbitmq_url)
                await rabbit.start()
            formats = ",".join(config.formats)
            log.info("shop open on %s: %d order instances, formats %s", redact_url(config.nats_url), len(orders), formats)
            await shop.take_orders(orders, stop)
            shop.log_status()
            if not stop.is_set():
                shop.stats.drained = await shop.drain(stop)
        finally:
            if rabbit is not None:
                await rabbit.close()
                shop.stats.rabbitmq = dict(rabbit.counts)
            await shop.close(orders + others)
    shop.stats.elapsed = time.monotonic() - started
    shop.log_status()
    return shop.stats
