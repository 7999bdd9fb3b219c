"""Jaeger thrift (agent datagrams and collector HTTP bodies) into normalised spans."""
import struct
from functools import lru_cache
from pathlib import Path

import thriftpy2
from thriftpy2.protocol import TCompactProtocol, TCyBinaryProtocolFactory
from thriftpy2.thrift import TMessageType, TType
from thriftpy2.transport import TTransportException
from thriftpy2.transport.buffered import TCyBufferedTransport
from thriftpy2.transport.memory import TCyMemoryBuffer, TMemoryBuffer

from collector.traces.model import (
    KINDS,
    MAX_ITEMS,
    STATUS_CODES,
    DecodeResult,
    SpanDecodeError,
    SpanRejected,
    capped,
    json_value,
    make_span,
)

_IDL = Path(__file__).parent / "idl"
jaeger_thrift = thriftpy2.load(str(_IDL / "jaeger.thrift"), module_name="jaeger_thrift")
agent_thrift = thriftpy2.load(
    str(_IDL / "agent.thrift"), module_name="agent_thrift", include_dirs=[str(_IDL)]
)

# The Cython binary protocol reads ~7x faster than pure Python, but over the
# Cython memory buffer a short read goes unnoticed and yields uninitialised
# bytes; the Cython buffered transport over a plain memory buffer raises at the
# end of the data instead. Lenient reads: older clients write binary messages
# without the version header. The pure-Python compact reader notices short reads
# itself, so the faster Cython memory buffer is safe under it.
_BINARY_PROTOCOL = TCyBinaryProtocolFactory(strict_read=False)

_U64 = 2**64 - 1
_TAG_TYPE = jaeger_thrift.TagType
_STRING, _DOUBLE, _BOOL, _LONG, _BINARY = _TAG_TYPE.STRING, _TAG_TYPE.DOUBLE, _TAG_TYPE.BOOL, _TAG_TYPE.LONG, _TAG_TYPE.BINARY
_CHILD_OF = jaeger_thrift.SpanRefType.CHILD_OF

# The OpenTelemetry Jaeger exporter copies resource attributes into every span's
# tags (process.tags stays empty); keys in these namespaces go back to the resource.
_RESOURCE_PREFIXES = (
    "service.", "telemetry.", "host.", "process.", "os.", "container.", "k8s.",
    "cloud.", "deployment.", "device.",
)
_RESOURCE_KEYS = frozenset({"hostname", "ip", "jaeger.version", "client-uuid"})
# Tags that become normalised fields, or repeat one.
_CONSUMED = frozenset({
    "span.kind", "otel.status_code", "otel.status_description",
    "otel.library.name", "otel.library.version", "otel.scope.name",
})


def decode_jaeger_batch(data, protocol="binary"):
    """A bare thrift ``Batch``, as POSTed to a Jaeger collector's ``/api/traces``."""
    data = bytes(data)
    proto = _protocol(data, protocol)
    batch = jaeger_thrift.Batch()
    _read(batch, proto, data, 0, "Batch", protocol)
    return _decode(batch)


def decode_jaeger_agent(data, protocol="compact"):
    """One agent datagram: an ``Agent.emitBatch`` message wrapping a ``Batch``."""
    data = bytes(data)
    proto = _protocol(data, protocol)
    try:
        name, message_type, _ = proto.read_message_begin()
    except Exception as exc:
        raise SpanDecodeError(f"not a thrift {protocol} message: {_describe(exc)}") from None
    if name != "emitBatch" or message_type not in (TMessageType.ONEWAY, TMessageType.CALL):
        raise SpanDecodeError(f"expected an emitBatch message, got {name!r} of type {message_type}")
    # Binary message header: [version+type] name-length name [type] seqid.
    header = 4 + 4 + len("emitBatch") + 4 if data[0] & 0x80 else 4 + len("emitBatch") + 1 + 4
    args = agent_thrift.Agent.emitBatch_args()
    _read(args, proto, data, header, "emitBatch", protocol)
    if args.batch is None:
        raise SpanDecodeError("emitBatch without a batch")
    return _decode(args.batch)


def _protocol(data, protocol):
    if protocol == "binary":
        return _BINARY_PROTOCOL.get_protocol(TCyBufferedTransport(TMemoryBuffer(data)))
    if protocol == "compact":
        return _CheckedCompactProtocol(TCyMemoryBuffer(data), len(data))
    raise ValueError(f"protocol must be 'binary' or 'compact', not {protocol!r}")


def _read(target, proto, data, offset, what, protocol):
    # Malformed input can surface as almost any exception from the thrift
    # readers (struct.error, UnicodeError, RecursionError...); all mean the same.
    try:
        if protocol == "binary":
            _check_binary(data, offset, TType.STRUCT, 0)
        target.read(proto)
    except Exception as exc:
        raise SpanDecodeError(f"not a Jaeger {what} in thrift {protocol}: {_describe(exc)}") from None


def _describe(exc):
    if isinstance(exc, (TTransportException, IndexError, struct.error)):
        return "truncated"
    return str(exc) or type(exc).__name__


# thriftpy2's readers skip an unknown field's list by looping over its declared
# length, even when the element type takes no bytes (STOP, VOID, garbage), so a
# ten-byte header costs seconds of CPU. Every container must fit in the bytes
# that are left and hold a real type; then decoding time is linear in the size.

_ELEMENT_TYPES = frozenset({
    TType.BOOL, TType.BYTE, TType.I16, TType.I32, TType.I64, TType.DOUBLE,
    TType.STRING, TType.BINARY, TType.STRUCT, TType.MAP, TType.SET, TType.LIST,
})
_WIDTHS = {TType.BOOL: 1, TType.BYTE: 1, TType.I16: 2, TType.I32: 4, TType.I64: 8, TType.DOUBLE: 8}
_I32 = struct.Struct(">i")
_MAX_DEPTH = 32


def _check_container(size, left, *types):
    if size < 0 or size > left:
        raise ValueError(f"container of {size} items in {left} bytes")
    if size and not _ELEMENT_TYPES.issuperset(types):
        raise ValueError(f"container of unknown type {types}")


class _CheckedCompactProtocol(TCompactProtocol):
    def __init__(self, trans, size):
        super().__init__(trans)
        self._size = size

    def _read_collection_begin(self):
        element_type, size = super()._read_collection_begin()
        _check_container(size, self._size, element_type)
        return element_type, size

    def _read_map_begin(self):
        key_type, value_type, size = super()._read_map_begin()
        _check_container(size, self._size, key_type, value_type)
        return key_type, value_type, size


def _check_binary(data, pos, ttype, depth):
    """Walk one binary-protocol value without building it; return where it ends."""
    width = _WIDTHS.get(ttype)
    if width:
        return pos + width
    if ttype == TType.STRING or ttype == TType.BINARY:
        (size,) = _I32.unpack_from(data, pos)
        _check_container(size, len(data) - pos - 4)
        return pos + 4 + size
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deep")
    if ttype == TType.STRUCT:
        while (field_type := data[pos]) != TType.STOP:
            pos = _check_binary(data, pos + 3, field_type, depth + 1)
        return pos + 1
    if ttype == TType.LIST or ttype == TType.SET:
        element_type = data[pos]
        (size,) = _I32.unpack_from(data, pos + 1)
        pos += 5
        _check_container(size, len(data) - pos, element_type)
        if element_type in _WIDTHS:
            return pos + size * _WIDTHS[element_type]
        for _ in range(size):
            pos = _check_binary(data, pos, element_type, depth + 1)
        return pos
    if ttype == TType.MAP:
        key_type, value_type = data[pos], data[pos + 1]
        (size,) = _I32.unpack_from(data, pos + 2)
        pos += 6
        _check_container(size, len(data) - pos, key_type, value_type)
        for _ in range(size):
            pos = _check_binary(data, pos, key_type, depth + 1)
            pos = _check_binary(data, pos, value_type, depth + 1)
        return pos
    raise ValueError(f"unknown thrift type {ttype}")


def _decode(batch):
    if batch.process is None or batch.spans is None:
        raise SpanDecodeError("Batch without its required process or spans")
    process_tags = _tags(batch.process.tags or [])
    service = _text(batch.process.serviceName)
    result = DecodeResult()
    for index, span in enumerate(batch.spans):
        try:
            result.spans.append(_span(span, service, process_tags))
        except SpanRejected as exc:
            name = _text(getattr(span, "operationName", ""))
            result.rejected.append(f"span {index} ({name!r}): {exc}")
    return result


def _span(span, service, process_tags):
    notes = []
    trace_id = ((span.traceIdHigh or 0) & _U64) << 64 | ((span.traceIdLow or 0) & _U64)
    span_id = (span.spanId or 0) & _U64
    if not trace_id:
        raise SpanRejected("trace id is zero")
    if not span_id:
        raise SpanRejected("span id is zero")
    parent = (span.parentSpanId or 0) & _U64

    links = []
    for ref in (span.references or [])[: MAX_ITEMS + 1]:
        ref_trace = ((ref.traceIdHigh or 0) & _U64) << 64 | ((ref.traceIdLow or 0) & _U64)
        ref_span = (ref.spanId or 0) & _U64
        if not ref_trace or not ref_span:
            notes.append("reference with a zero id dropped")
        elif ref.refType == _CHILD_OF and not parent and ref_trace == trace_id:
            # Jaeger clients may name the parent only as a CHILD_OF reference.
            parent = ref_span
        else:
            kind = "child_of" if ref.refType == _CHILD_OF else "follows_from"
            links.append({
                "trace_id": f"{ref_trace:032x}",
                "span_id": f"{ref_span:016x}",
                "attributes": {} if kind == "follows_from" else {"jaeger.ref_type": kind},
            })

    tags = _tags(span.tags or [])
    resource = dict(process_tags)
    for key in [k for k in tags if _is_resource_key(k)]:
        resource[key] = tags.pop(key)
    service = service or str(resource.get("service.name", ""))
    if not service:
        notes.append("no service name: unknown_service")
        service = "unknown_service"
    resource.setdefault("service.name", service)

    scope = str(tags.get("otel.scope.name") or tags.get("otel.library.name") or "")
    status_code = str(tags.get("otel.status_code", "unset")).lower()
    if status_code not in STATUS_CODES:
        notes.append(f"unknown otel.status_code {status_code!r}: status unset")
        status_code = "unset"
    status_message = str(tags.get("otel.status_description", ""))
    raw_kind = tags.get("span.kind", "")
    for key in _CONSUMED:
        tags.pop(key, None)
    kind = str(raw_kind).lower()
    if kind not in KINDS:
        notes.append(f"unknown span.kind {raw_kind!r} kept as a tag")
        tags["span.kind"] = raw_kind
        kind = ""
    if not tags.get("otel.scope.version"):
        tags.pop("otel.scope.version", None)

    return make_span(
        trace_id=f"{trace_id:032x}",
        span_id=f"{span_id:016x}",
        parent_span_id=f"{parent:016x}" if parent else None,
        service=service,
        operation=_text(span.operationName),
        kind=kind,
        start_us=span.startTime or 0,
        duration_us=span.duration or 0,
        status_code=status_code,
        status_message=status_message,
        tags=tags,
        resource=resource,
        events=[_event(log, notes) for log in (span.logs or [])[: MAX_ITEMS + 1]],
        links=links,
        scope=scope,
        notes=notes,
    )


@lru_cache(maxsize=4096)
def _is_resource_key(key):
    return key in _RESOURCE_KEYS or key.startswith(_RESOURCE_PREFIXES)


def _event(log, notes):
    fields = _tags(log.fields or [])
    # OpenTelemetry exporters put the event name under "event" or "message".
    name = fields.pop("event", None) or fields.pop("message", None) or ""
    return {
        "time_us": log.timestamp or 0,
        "name": str(name),
        "attributes": capped(fields, "event attributes", notes),
    }


def _tags(tags):
    # The hottest loop of the Jaeger path (a span carries ~20 tags): kept flat.
    out = {}
    for tag in tags:
        kind = tag.vType
        if kind == _STRING:
            value = tag.vStr
            if type(value) is bytes:
                value = value.decode("utf-8", "replace")
        elif kind == _LONG:
            value = tag.vLong
        elif kind == _BOOL:
            value = tag.vBool
        elif kind == _DOUBLE:
            value = json_value(tag.vDouble)
        elif kind == _BINARY:
            value = json_value(tag.vBinary)
        else:
            value = None
        key = tag.key
        out[key if type(key) is str else _text(key)] = value
    return out


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
