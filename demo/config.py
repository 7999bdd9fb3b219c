"""The demo's settings: one dataclass, its command-line options, and the names it uses on the bus."""
import argparse
import os
import re
from dataclasses import dataclass, field, fields

from demo.wire import FORMATS

EXPORTERS = ("jaeger-udp", "jaeger-http", "otlp-http", "otlp-grpc")


def env_str(name, default):
    return os.environ.get(name) or default


def env_port(name, default):
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name} must be a port number, not {value!r}")
    return int(value)


def choices(allowed, none_word=None):
    """An argparse type for a comma-separated subset of `allowed` (`none_word` means empty)."""

    def parse(text):
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        if none_word is not None and names == (none_word,):
            return ()
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}, comma-separated; got {text!r}")
        return names

    return parse


parse_formats = choices(FORMATS)
parse_exporters = choices(EXPORTERS, none_word="none")


@dataclass
class DemoConfig:
    nats_url: str = field(default_factory=lambda: env_str("NATS_URL", "nats://127.0.0.1:4222"))
    # Set: payments also travel a Kafka topic to a loyalty consumer group (demo/kafka_leg.py).
    kafka_bootstrap: str = field(default_factory=lambda: env_str("KAFKA_BOOTSTRAP_SERVERS", "").removeprefix("kafka://"))
    # Set: the mail also runs over RabbitMQ (demo/rabbit.py), so both brokers show on every page.
    rabbitmq_url: str = field(default_factory=lambda: env_str("RABBITMQ_URL", ""), repr=False)
    rate: float = 2.0  # mean orders per second
    fail_fraction: float = 0.1
    slow_delay: float = 0.5  # seconds the inventory spends on each order
    count: int | None = None  # orders to place, then drain and stop
    duration: float | None = None  # seconds to take orders, then drain and stop
    formats: tuple = FORMATS
    exporters: tuple = EXPORTERS  # empty: spans are made (trace context flows) but not exported
    spans_host: str = field(default_factory=lambda: env_str("EVENTSCOPE_SPANS_HOST", "127.0.0.1"))
    # Sent the way each exporter can (Bearer header, Basic password); UDP carries none.
    spans_token: str = field(default_factory=lambda: env_str("SPAN_RECEIVER_TOKEN", ""), repr=False)
    jaeger_agent_port: int = field(default_factory=lambda: env_port("JAEGER_AGENT_PORT", 6831))
    jaeger_http_port: int = field(default_factory=lambda: env_port("JAEGER_HTTP_PORT", 14268))
    otlp_http_port: int = field(default_factory=lambda: env_port("OTLP_HTTP_PORT", 4318))
    otlp_grpc_port: int = field(default_factory=lambda: env_port("OTLP_GRPC_PORT", 4317))
    max_deliver: int = 3  # deliveries before JetStream (payment) or the mailer (DLQ subject) gives up
    retry_delay: float = 1.0  # nak delay before a failed delivery comes back
    order_instances: int = 4  # the first half still publish order.created v1
    wave_period: float = 60.0  # order traffic rises and falls over this many seconds; 0 is steady
    initial_stock: int = 10  # units per product on the shelf
    drain_timeout: float = 30.0
    namespace: str = ""  # prefixes stream names and subjects, so runs can share a server

    def __post_init__(self):
        if self.namespace and not re.fullmatch(r"[A-Za-z0-9_-]+", self.namespace):
            raise ValueError(f"namespace may hold letters, digits, '_' and '-' only, not {self.namespace!r}")
        if self.rate <= 0 or self.order_instances < 1 or self.max_deliver < 1:
            raise ValueError("rate, order_instances and max_deliver must be positive")
        if not 0 <= self.fail_fraction <= 1:
            raise ValueError("fail_fraction must be between 0 and 1")
        self.formats = tuple(self.formats) or FORMATS
        self.exporters = tuple(self.exporters)


def add_arguments(parser):
    add = parser.add_argument
    add("--nats-url", help="NATS server URL (default: $NATS_URL or nats://127.0.0.1:4222)")
    add("--rate", type=float, help="mean orders per second (default 2)")
    add("--fail-fraction", type=float, help="share of orders whose payment fails until dead-lettered (default 0.1)")
    add("--slow-delay", type=float, help="seconds the inventory spends on each order (default 0.5)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, help="place this many orders, let the pipeline drain, then stop")
    stop.add_argument("--duration", type=float, help="take orders for this many seconds, drain, then stop")
    add("--formats", type=parse_formats, help=f"wire formats to use (default all: {','.join(FORMATS)})")
    add("--exporters", type=parse_exporters, help=f"span exporters, or none (default all: {','.join(EXPORTERS)})")
    add("--spans-host", help="host of the span receivers (default: $EVENTSCOPE_SPANS_HOST or 127.0.0.1)")
    add("--max-deliver", type=int, help="deliveries before a message is given up (default 3)")
    add("--retry-delay", type=float, help="seconds before a failed delivery is retried (default 1)")
    add("--order-instances", type=int, help="instances of the order service; half still on v1 (default 4)")
    add("--wave-period", type=float, help="seconds per rise and fall of order traffic; 0 is steady (default 60)")
    add("--initial-stock", type=int, help="units per product on the shelf (default 10)")
    add("--drain-timeout", type=float, help="seconds to wait for the pipeline to drain (default 30)")
    add("--namespace", help="prefix for stream names and subjects (default none)")


def config_from_options(options):
    """A DemoConfig from parsed options (argparse or Django); options left unset keep their defaults."""
    parsers = {"formats": parse_formats, "exporters": parse_exporters}
    known = {f.name for f in fields(DemoConfig)}
    values = {}
    for name, value in options.items():
        if name not in known or value is None:
            continue
        if name in parsers and isinstance(value, str):
            value = parsers[name](value)
        values[name] = value
    return DemoConfig(**values)


@dataclass(frozen=True)
class Names:
    """Stream names and subjects, under an optional namespace."""

    namespace: str = ""

    def subject(self, logical):
        return f"{self.namespace}.{logical}" if self.namespace else logical

    def stream(self, logical):
        return f"{self.namespace}_{logical}" if self.namespace else logical

    def actual(self, logical):
        """The subject on the bus. A logical subject without dots is a Go Micro topic, which
        names its own stream, so it is prefixed like a stream name."""
        return self.subject(logical) if "." in logical else self.stream(logical)

    def logical(self, actual):
        for prefix in (f"{self.namespace}.", f"{self.namespace}_"):
            if self.namespace and actual.startswith(prefix):
                return actual[len(prefix):]
        return actual
