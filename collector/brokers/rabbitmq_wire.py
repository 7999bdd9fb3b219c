"""RabbitMQ messages as `RawMessage`s (pure): topic, headers, properties, and the key that
makes a stored message idempotent (see `collector.brokers.rabbitmq`)."""
import hashlib
import json
from datetime import UTC, datetime

from collector.brokers import RawMessage

TRACE_EXCHANGE = "amq.rabbitmq.trace"
DEFAULT_EXCHANGE = "amq.default"
PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
              "expiration", "message_id", "timestamp", "type", "user_id", "app_id")


def subject_for(exchange, routing_key, kind=None):
    """The topic a message is stored under (see the module docstring)."""
    if kind in ("fanout", "headers") or not routing_key:
        return exchange or DEFAULT_EXCHANGE
    return routing_key


def header_text(value):
    """A header value as stored (text); bytes that are not UTF-8 are kept escaped."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return json.dumps(value, default=_jsonable, separators=(",", ":"))


def _jsonable(value):
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def message_key(exchange, routing_key, headers, body, message_id):
    """The 63-bit `seq` of a message (see the module docstring)."""
    digest = hashlib.blake2b(digest_size=8)
    if message_id:
        digest.update(b"id\0" + exchange.encode() + b"\0" + str(message_id).encode())
    else:
        digest.update(exchange.encode() + b"\0" + routing_key.encode() + b"\0")
        digest.update(json.dumps(headers, sort_keys=True, default=str).encode() + b"\0" + body)
    return int.from_bytes(digest.digest(), "big") >> 1


def to_raw(exchange, routing_key, amqp_headers, properties, body, arrived, kind=None):
    """A RawMessage from what AMQP delivered. A header that cannot be read is kept as text
    with a note in `amqp-header-errors`, never dropped."""
    headers, errors = {}, []
    for name, value in (amqp_headers or {}).items():
        try:
            headers[str(name)] = header_text(value)
        except Exception as error:  # noqa: BLE001 - whatever the value, the message is kept
            headers[str(name)] = repr(value)
            errors.append(f"{name}: {error}")
    for name in PROPERTIES:
        value = properties.get(name)
        if value not in (None, ""):
            headers["amqp-" + name.replace("_", "-")] = header_text(value)
    exchange = exchange or DEFAULT_EXCHANGE
    headers["amqp-exchange"] = exchange
    headers["amqp-routing-key"] = routing_key
    if errors:
        headers["amqp-header-errors"] = "; ".join(errors)
    stamp = properties.get("timestamp")
    if isinstance(stamp, int) and 0 < stamp < 2**33:  # the firehose gives seconds
        stamp = datetime.fromtimestamp(stamp, UTC)
    ts = stamp.astimezone(UTC) if isinstance(stamp, datetime) else arrived
    seq = message_key(exchange, routing_key, headers, body, properties.get("message_id"))
    return RawMessage(subject_for(exchange, routing_key, kind), exchange, seq, ts, arrived, headers, body)


def from_trace(message, arrived, kinds):
    """A firehose copy (`publish.<exchange>`): the original exchange, routing key,
    properties and headers are in the trace message's headers."""
    trace = message.headers or {}
    exchange = header_text(trace.get("exchange_name", "")) or DEFAULT_EXCHANGE
    keys = trace.get("routing_keys") or [""]
    props = dict(trace.get("properties") or {})
    headers = props.pop("headers", None) or {}
    properties = {name: props.get(name) for name in PROPERTIES}
    return to_raw(exchange, header_text(keys[0]), headers, properties, message.body, arrived, kinds.get(exchange))


def from_delivery(message, arrived, kinds):
    properties = {name: getattr(message, name, None) for name in PROPERTIES}
    return to_raw(message.exchange, message.routing_key or "", message.headers, properties, message.body, arrived,
                  kinds.get(message.exchange or DEFAULT_EXCHANGE))
