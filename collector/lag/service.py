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
        self.latest = {}  # broker name -> {(stream, consumer): figures}
        registry.register(self)

    def show(self, broker, latest):
        self.latest = {**self.latest, broker: latest}

    def clear(self):
        self.latest = {}

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        brokers = dict(self.latest)
        for name, documentation, key in self.GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["broker", "stream", "consumer"])
            for broker, latest in brokers.items():
                for (stream, consumer), values in dict(latest).items():
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


async def sample_lag(collector, stop):
    """The collector extension: a round every interval over every broker it taps that has a
    lag source (JetStream, RabbitMQ, Kafka), while this collector holds the lock."""
    link = SamplerLink()
    samplers = {}  # broker id -> Sampler
    next_prune = time.monotonic() + 60
    try:
        while not stop.is_set():
            began = time.monotonic()
            interval = 10
            try:
                lag_settings = await database_sync_to_async(_load_settings)()
                interval = lag_settings.interval_seconds
                if lag_settings.enabled and await link.hold():
                    for adapter in _sampled(collector):
                        sampler = samplers.get(adapter.broker.id)
                        if sampler is None:
                            log.info("lag sampler: %s samples %s every %s s", collector.name, adapter.broker.name,
                                     interval)
                            sampler = samplers[adapter.broker.id] = Sampler(adapter.broker.id, source_for(adapter),
                                                                            collector.name)
                        _, crossings = await sampler.sample(link.conn, link.partitions)
                        collector.lag_gauges.show(adapter.broker.name, sampler.latest)
                        await notify(link.conn, adapter.broker.name, crossings)
                    collector.lag_sampler = samplers.get(collector.broker.id)
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_EVERY
                        dropped = await database_sync_to_async(writer.prune)()
                        if dropped:
                            log.info("lag retention dropped %s", ", ".join(dropped))
                elif samplers or not lag_settings.enabled:
                    collector.lag_sampler = await _close_all(samplers)
                    collector.lag_gauges.clear()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                log.warning("lag sampler: database unavailable (%s); the lock is released, retrying", error)
                collector.lag_sampler = await _close_all(samplers)
                await link.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad round must not end sampling; a fresh connection starts clean
                log.exception("lag sampling round failed")
                collector.lag_sampler = await _close_all(samplers)
                await link.close()
            await pause(stop, max(0.2, interval - (time.monotonic() - began)))
    finally:
        collector.lag_gauges.clear()
        await _close_all(samplers)
        await link.close()


def _sampled(collector):
    """The adapters whose consumers are sampled: those with a lag source, once they tap."""
    taps = getattr(collector, "taps", None)
    adapters = taps.adapters if taps is not None else [collector.adapter]
    ready = taps.ready if taps is not None else {}
    return [a for a in adapters if getattr(a, "kind", "nats") in SOURCES
            and (a is collector.adapter or ready.get(a.broker.name))]


async def _close_all(samplers):
    for sampler in samplers.values():
        await _closed(sampler)
    samplers.clear()
    return None


async def _closed(sampler):
    """Close what a sampler's source holds open (a Kafka source has a client); None."""
    close = getattr(getattr(sampler, "source", None), "close", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing a client whose broker is gone
            log.debug("closing a lag source failed", exc_info=True)
    return None


SOURCES = ("nats", "rabbitmq", "kafka")


def source_for(adapter):
    """The sampler's source for a broker adapter: JetStream consumers of a NATS broker,
    queues of a RabbitMQ broker (`collector.lag.rabbitmq`), consumer groups of a Kafka
    cluster (`collector.lag.kafka`)."""
    kind = getattr(adapter, "kind", "nats")
    if kind == "kafka":
        from collector.lag.kafka import KafkaSource

        return KafkaSource(adapter)
    if kind == "rabbitmq":
        from collector.lag.rabbitmq import RabbitSource

        return RabbitSource(adapter.api, adapter.vhost, adapter.broker.id, adapter.connection)
    return JetStreamSource(adapter.nc)


def install(collector):
    """Sample consumer lag beside `collector`'s loop (call before `collector.run`)."""
    collector.lag_sampler = None
    collector.lag_gauges = LagGauges(collector.metrics.registry)
    collector.extensions.append(sample_lag)
