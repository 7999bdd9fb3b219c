"""The lag sampler inside the collector: every interval (admin setting) one round over every
consumer, by one collector at a time.

Several collectors may run; each tries a PostgreSQL advisory lock on its own sampler
connection before a round. The one that holds it samples; when it stops (or its connection
dies) the lock is released and another takes it at its next try. The sampling collector also
exposes per-consumer gauges on its /metrics; the others expose none.
"""
import asyncio
import logging
import time

import psycopg
from channels.db import database_sync_to_async

from collector.db import WriterConnection
from collector.lag import writer
from collector.lag.jetstream import JetStreamSource
from collector.lag.sampler import Sampler
from collector.lag.thresholds import crossing_body
from collector.partitions import LAG_SAMPLES
from collector.waits import pause

log = logging.getLogger("eventscope.lag")

LOCK = 72170  # pg advisory lock key of the lag sampler
PRUNE_EVERY = 3600


async def _nothing(conn):
    return None


class SamplerLink(WriterConnection):
    """The sampler's connection: it holds the advisory lock while it lives."""

    def __init__(self):
        super().__init__(_nothing, LAG_SAMPLES, connect_timeout=5)
        self.holding = False

    async def hold(self):
        """True when this connection holds the sampler lock (taking it if it is free)."""
        if self.conn is None or self.conn.closed:
            self.holding = False
        conn = await self.connected()
        if not self.holding:
            async with conn.cursor() as cur:
                await cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK])
                self.holding = bool((await cur.fetchone())[0])
            await conn.commit()
        return self.holding

    async def close(self):
        self.holding = False
        await super().close()


class LagGauges:
    """Per-consumer gauges for Grafana users: pending, ack pending, oldest age, read from the
    sampler's latest round when /metrics is scraped (nothing is done per round). Users'
    consumers only; the observers' lag is the collector's own `eventscope_observer_lag`."""

    GAUGES = [
        ("eventscope_consumer_pending", "Messages not yet delivered to the consumer", "pending"),
        ("eventscope_consumer_ack_pending", "Messages delivered and not acknowledged", "ack_pending"),
        ("eventscope_consumer_oldest_age_seconds", "Age of the oldest unprocessed message", "oldest_age"),
    ]

    def __init__(self, registry):
        self.shown = {}  # broker name -> the latest figures of its sampler
        registry.register(self)

    def show(self, broker, latest):
        self.shown[broker] = latest

    def clear(self):
        self.shown = {}

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        shown = [(broker, dict(latest)) for broker, latest in list(self.shown.items())]
        for name, documentation, key in self.GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["broker", "stream", "consumer"])
            for broker, latest in shown:
                for (stream, consumer), values in latest.items():
                    if not values["observer"]:
                        family.add_metric([broker, stream, consumer], values[key])
            yield family

    def describe(self):
        return []


def _load_settings():
    from collector.models import LagSettings

    return LagSettings.load()


async def notify(conn, broker, crossings):
    """Post each crossing to its threshold's webhook (the dead-letter alerts' helper) and
    keep the outcome with it."""
    from collector.deadletters import webhooks
    from collector.models import DeadLetterSettings

    targets = [c for c in crossings if c.get("webhook") and c.get("key")]
    if not targets:
        return
    # Only the collector holding the sampler lock records crossings, so each is posted once;
    # the same target rules as dead-letter alerts (no link-local or metadata hosts, private
    # ranges only when allowed).
    allow_private = (await database_sync_to_async(DeadLetterSettings.load)()).allow_private_webhooks
    outcomes = await asyncio.gather(*(asyncio.to_thread(webhooks.post, c["webhook"], crossing_body(c, c["key"], broker),
                                                        allow_private) for c in targets))
    outcomes = [line for _, line in outcomes]
    await writer.mark_notified(conn, [(c["id"], outcome) for c, outcome in zip(targets, outcomes)])


def make_samplers(collector):
    """One sampler per broker whose adapter is tapping: JetStream consumers of each NATS
    broker, queues of each RabbitMQ broker (`collector.lag.rabbitmq`)."""
    from collector.lag.rabbitmq import RabbitSource

    samplers = []
    for adapter in collector.taps.adapters:
        if adapter.kind == "nats":
            source = JetStreamSource(adapter.nc)
        elif adapter.kind == "rabbitmq":
            source = RabbitSource(adapter.api, adapter.vhost, adapter.broker.id, adapter.connection)
        else:
            continue
        samplers.append((adapter, Sampler(adapter.broker.id, source, collector.name)))
    return samplers


async def sample_lag(collector, stop):
    """The collector extension: a round every interval while this collector holds the lock,
    over each broker in turn."""
    link = SamplerLink()
    sampler = samplers = None
    next_prune = time.monotonic() + 60
    try:
        while not stop.is_set():
            began = time.monotonic()
            interval = 10
            try:
                lag_settings = await database_sync_to_async(_load_settings)()
                interval = lag_settings.interval_seconds
                if lag_settings.enabled and await link.hold():
                    if samplers is None:
                        log.info("lag sampler: %s samples every %s s", collector.name, interval)
                        samplers = make_samplers(collector)
                        sampler = samplers[0][1] if samplers else None
                    for adapter, each in samplers:
                        if not collector.taps.ready.get(adapter.broker.name):
                            continue  # not connected yet: its consumers are not read
                        _, crossings = await each.sample(link.conn, link.partitions)
                        collector.lag_gauges.show(adapter.broker.name, each.latest)
                        await notify(link.conn, adapter.broker.name, crossings)
                    collector.lag_sampler = sampler
                    collector.lag_samplers = samplers
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_EVERY
                        dropped = await database_sync_to_async(writer.prune)()
                        if dropped:
                            log.info("lag retention dropped %s", ", ".join(dropped))
                elif samplers is not None or not lag_settings.enabled:
                    sampler = samplers = collector.lag_sampler = None
                    collector.lag_gauges.clear()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                log.warning("lag sampler: database unavailable (%s); the lock is released, retrying", error)
                sampler = samplers = collector.lag_sampler = None
                await link.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end sampling; a fresh connection starts clean
                log.exception("lag sampling round failed")
                sampler = samplers = collector.lag_sampler = None
                await link.close()
            await pause(stop, max(0.2, interval - (time.monotonic() - began)))
    finally:
        collector.lag_gauges.clear()
        await link.close()


def install(collector):
    """Sample consumer lag beside `collector`'s loop (call before `collector.run`)."""
    collector.lag_sampler = None  # the first broker's sampler (NATS)
    collector.lag_samplers = []
    collector.lag_gauges = LagGauges(collector.metrics.registry)
    collector.extensions.append(sample_lag)
