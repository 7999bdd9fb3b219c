"""The collector's broker adapters, one per enabled broker (see `collector.brokers` for the
interface), all feeding the same bounded queue.

The first NATS adapter is the primary one: the collector connects and starts it before
anything else, and the extensions that talk JetStream (dead-letter advisories, lag) use
its connection. Every other adapter connects and starts in a task of its own, retried with
growing waits, so a broker that is down (or fails to start) never holds back the others.
"""
import asyncio
import logging
from collections import defaultdict

from collector.brokers import make_adapter
from collector.secrets import redact_text
from collector.waits import pause

log = logging.getLogger("eventscope.collector")


class Taps:
    def __init__(self, brokers, queue, pending_bytes):
        self.queue = queue
        self.adapters = []
        for broker in brokers:
            feed = _Feed(queue)
            feed.adapter = make_adapter(broker, feed, pending_bytes=pending_bytes)
            self.adapters.append(feed.adapter)
        primary = [a for a in self.adapters if a.kind == "nats"] or self.adapters
        self.primary = primary[0]
        self.ready = {adapter.broker.name: False for adapter in self.adapters}

    @property
    def others(self):
        return [adapter for adapter in self.adapters if adapter is not self.primary]

    def adapter_named(self, name):
        return next(adapter for adapter in self.adapters if adapter.broker.name == name)

    async def run_other(self, adapter, stop):
        """Connect and start a secondary adapter, trying again with growing waits if its
        start fails; returns once it taps (or at a stop)."""
        wait = 0.5
        while not stop.is_set():
            if not await adapter.connect(stop):
                return
            try:
                await adapter.start()
                self.ready[adapter.broker.name] = True
                log.info("tapping broker %s (%s)", adapter.broker.name, adapter.kind)
                return
            except Exception as error:  # a start that failed is retried from the connect
                log.warning("broker %s did not start (%s); retrying in %.1f s", adapter.broker.name,
                            redact_text(str(error)), wait)
                await adapter.close()
                await pause(stop, wait)
                wait = min(30.0, wait * 2)

    async def ack(self, messages):
        """Each message acked by the adapter it came from (the primary one for messages
        made without a source, as tests make them)."""
        by_source = defaultdict(list)
        for message in messages:
            by_source[message.source or self.primary].append(message)
        for adapter, own in by_source.items():
            await adapter.ack(own)

    async def progress(self):
        """The observers' progress of every adapter that reports it, for the stall watch;
        keys of other brokers than the primary are prefixed with the broker name."""
        found = {}
        for adapter in self.adapters:
            report = getattr(adapter, "observer_progress", None)
            if report is None:
                continue
            try:
                progress = await report()
            except Exception as error:  # a broker that is down reports nothing this round
                log.debug("progress of broker %s not read: %s", adapter.broker.name, error)
                continue
            prefix = "" if adapter is self.primary else f"{adapter.broker.name}:"
            found.update({prefix + str(name): value for name, value in progress.items()})
        return found

    def report(self):
        """{broker name: {kind, ready, counters, streams}} for the heartbeat."""
        brokers = {}
        for adapter in self.adapters:
            entry = {"kind": adapter.kind, "ready": self.ready.get(adapter.broker.name, False),
                     "counters": dict(getattr(adapter, "counters", {}))}
            streams = getattr(adapter, "streams", None)
            if streams:
                entry["streams"] = {name: {"observed": s.observed, "retention": s.retention, "note": s.note}
                                    for name, s in streams.items()}
            brokers[adapter.broker.name] = entry
        return brokers


class _Feed:
    """An adapter's `deliver`: marks each message with its adapter, then queues it."""

    __slots__ = ("adapter", "queue")

    def __init__(self, queue):
        self.queue = queue
        self.adapter = None

    async def __call__(self, message):
        message.source = self.adapter
        await self.queue.put(message)


async def close_all(adapters, bounded):
    await asyncio.gather(*(bounded(adapter.close(), f"closing the connection to broker {adapter.broker.name}")
                           for adapter in adapters))
