"""One adapter per broker: each turns a broker into a stream of raw messages plus the few
admin calls the other rooms need (stream lookup, publish). Imports the standard library,
the broker's client library and `collector.ingest.subjects` only (Django settings are read
inside functions, never at import time).

The collector runs one adapter per enabled `Broker` row, all feeding the same queue and
writers. The interface every adapter offers (NATS in `nats.py`, RabbitMQ in `rabbitmq.py`,
Kafka in `kafka.py` …) is small:

    adapter = make_adapter(broker, deliver, pending_bytes=…)   # chosen by broker.kind
    await adapter.connect(stop) -> bool
        Connect, retrying with growing waits until it works (True) or `stop` (an
        asyncio.Event) is set (False). Nothing is delivered yet.
    await adapter.start()
        Subscribe to everything it taps. From here on it awaits `deliver(RawMessage)` for
        each message; `deliver` may block (the collector's queue is bounded), and the
        adapter must let that hold the broker back (flow control, prefetch), never drop.
    await adapter.ack(messages)
        Called after the batch holding `messages` (its own messages only, each one at most
        once) is committed: settle them on the broker. Safe to repeat; a lost ack costs a
        redelivery, which the store's idempotency key absorbs.
    await adapter.close()
        Release connections and tasks. Called once, also after a failed connect; must not
        hang (the collector bounds it in time anyway).

and, as plain attributes: `broker` (the `collector.models.Broker` row, set by
`make_adapter`), `kind` (the broker kind), `counters` (a JSON-able dict written into the
collector's heartbeat under `brokers.<name>`). Optional:
`await adapter.observer_progress()` -> {name: (ack floor, pending)} for the stall watch
(`collector.ingest.stall`), and `streams` ({name: state with observed/retention/note}) for
the topics page.

A message's `RawMessage.source` is set by the collector to the adapter it came from, so
each row gets that adapter's broker id and each ack goes back to that adapter.
"""
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from urllib.parse import urlsplit

# Broker kind -> "module:factory"; a factory takes (broker, deliver, pending_bytes) and
# returns an adapter. Imported when first used, so an unused broker's client library is
# never loaded.
FACTORIES = {
    "nats": "collector.brokers:_nats_adapter",
    "rabbitmq": "collector.brokers.rabbitmq:adapter_for",
    "kafka": "collector.brokers.kafka:adapter_for",
}
# URL scheme -> broker kind, for URLs given without a kind.
SCHEMES = {"nats": "nats", "tls": "nats", "ws": "nats", "wss": "nats", "amqp": "rabbitmq", "amqps": "rabbitmq",
           "kafka": "kafka"}


@dataclass(slots=True)
class RawMessage:
    subject: str  # NATS subject; RabbitMQ: the exchange's topic name (see rabbitmq.py)
    stream: str  # JetStream stream, "" for the core tap; RabbitMQ: the exchange
    seq: int  # stream sequence, or a receive counter (core tap); RabbitMQ: see rabbitmq.py
    ts: datetime  # broker time (JetStream) or receive time
    received_at: datetime
    headers: dict | None
    data: bytes
    reply: str | None = None  # the ack subject of a JetStream delivery
    source: object = None  # the adapter it came from (set by the collector)
    token: object = None  # what the adapter needs to ack it (a delivery tag ...)


def kind_for_url(url):
    """The broker kind a URL names by its scheme; ValueError for an unknown scheme."""
    scheme = urlsplit(url.split(",")[0].strip()).scheme.lower()
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"no broker adapter for URL scheme {scheme!r}") from None


def make_adapter(broker, deliver, pending_bytes=64 * 1024 * 1024):
    """The adapter for `broker` (a `collector.models.Broker`), chosen by its kind."""
    kind = broker.kind or kind_for_url(broker.url)
    try:
        path = FACTORIES[kind]
    except KeyError:
        raise ValueError(f"broker {broker.name}: no adapter for kind {kind!r}") from None
    module, name = path.split(":")
    adapter = getattr(import_module(module), name)(broker, deliver, pending_bytes)
    adapter.broker = broker
    adapter.kind = kind
    return adapter


def _nats_adapter(broker, deliver, pending_bytes):
    from django.conf import settings

    from collector.brokers.nats import NatsAdapter

    # NATS_CREDS and NATS_TLS_CA belong to the bus NATS_URL names, as for the worker's publish.
    own = broker.url == settings.NATS_URL
    return NatsAdapter(broker.url, deliver, settings.NATS_CREDS if own else None,
                       settings.NATS_TLS_CA if own else None, pending_bytes=pending_bytes)
