"""The normalised span every receiver produces, whatever wire format it came in.

Decoders keep what is odd but usable and say so in ``Span.notes``; a span whose
ids are unusable is rejected alone, so one bad span never costs its batch.
"""
import base64
import math
from dataclasses import dataclass, field

KINDS = frozenset({"server", "client", "producer", "consumer", "internal", ""})
STATUS_CODES = frozenset({"unset", "ok", "error"})

# Per span and per list (tags, resource, events, links, attributes of one event
# or link): enough for any sane instrumentation, small enough that one runaway
# span cannot swell a batch.
MAX_ITEMS = 1000


class SpanDecodeError(ValueError):
    """A whole payload could not be decoded; ``reason`` is short and human."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class SpanRejected(ValueError):
    """One span of a payload is unusable (bad ids); the rest of the payload is kept."""


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_span_id: str | None
    service: str
    operation: str
    kind: str  # one of KINDS
    start_us: int  # microseconds since the epoch
    duration_us: int
    status_code: str  # one of STATUS_CODES
    status_message: str
    error: bool
    tags: dict = field(default_factory=dict)
    resource: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # {"time_us", "name", "attributes"}
    links: list = field(default_factory=list)  # {"trace_id", "span_id", "attributes"}
    scope: str = ""
    notes: tuple = ()


@dataclass(slots=True)
class DecodeResult:
    """The spans of one payload and one reason per span that was rejected."""

    spans: list = field(default_factory=list)
    rejected: list = field(default_factory=list)


def hex_id(raw, size, name):
    """``raw`` bytes as lowercase hex; SpanRejected unless exactly ``size`` bytes and not all zero."""
    if len(raw) != size:
        raise SpanRejected(f"{name} must be {size} bytes, got {len(raw)}")
    if not any(raw):
        raise SpanRejected(f"{name} is all zeros")
    return raw.hex()


def micros(nanos):
    """Nanoseconds to microseconds, rounded as the OpenTelemetry Jaeger exporter rounds."""
    return (nanos + 500) // 1000


def json_value(value):
    """An attribute value as JSON: bytes become base64, non-finite floats strings."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def capped(items, what, notes):
    """The first MAX_ITEMS of a dict or list, noting in ``notes`` when some were cut."""
    if len(items) <= MAX_ITEMS:
        return items
    notes.append(f"{len(items)} {what} truncated to {MAX_ITEMS}")
    if isinstance(items, dict):
        return dict(list(items.items())[:MAX_ITEMS])
    return items[:MAX_ITEMS]


def is_true(value):
    return value is True or (isinstance(value, str) and value.lower() == "true")


def make_span(
    *,
    trace_id,
    span_id,
    parent_span_id,
    service,
    operation,
    kind,
    start_us,
    duration_us,
    status_code,
    status_message,
    tags,
    resource,
    events,
    links,
    scope,
    notes,
):
    """The rules every format shares: clamp durations, cap sizes, read the ``error`` tag."""
    if duration_us < 0:
        notes.append("end before start: duration set to 0")
        duration_us = 0
    # OpenTracing-era instrumentation marks failures only with error=true; it
    # counts as an error status unless the span says otherwise.
    error_tag = tags.get("error")
    if isinstance(error_tag, bool) or str(error_tag).lower() in ("true", "false"):
        del tags["error"]
        if is_true(error_tag) and status_code == "unset":
            status_code = "error"
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        service=service,
        operation=operation,
        kind=kind,
        start_us=start_us,
        duration_us=duration_us,
        status_code=status_code,
        status_message=status_message,
        error=status_code == "error" or is_true(error_tag),
        tags=capped(tags, "tags", notes),
        resource=capped(resource, "resource attributes", notes),
        events=capped(events, "events", notes),
        links=capped(links, "links", notes),
        scope=scope,
        notes=tuple(notes),
    )
