"""OTLP traces (protobuf and JSON ExportTraceServiceRequest) into normalised spans."""
import base64
import json

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from collector.traces.model import (
    MAX_ITEMS,
    DecodeResult,
    SpanDecodeError,
    SpanRejected,
    capped,
    hex_id,
    json_value,
    make_span,
    micros,
)

_KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_PLAIN = frozenset({"string_value", "bool_value", "int_value"})  # already JSON as they are


def decode_otlp_protobuf(data):
    """An ``ExportTraceServiceRequest`` in protobuf, as sent to ``/v1/traces``."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(bytes(data))
    except (DecodeError, ValueError):
        raise SpanDecodeError("not an OTLP protobuf ExportTraceServiceRequest (malformed or truncated)") from None
    return decode_otlp_request(request)


def decode_otlp_json(data):
    """An ``ExportTraceServiceRequest`` in OTLP/JSON: ids in hex, int64s often strings."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SpanDecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SpanDecodeError("OTLP/JSON must be an object with resourceSpans")
    bad_ids = _hex_ids_to_base64(document)
    try:
        request = json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise SpanDecodeError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return decode_otlp_request(request, bad_ids)


def decode_otlp_request(request, bad_ids=None):
    """An already parsed ``ExportTraceServiceRequest`` (as gRPC hands it over).

    ``bad_ids`` maps (resource, scope, span) positions to a reason for rejecting
    that span, found before parsing (OTLP/JSON ids that are not hex).
    """
    result = DecodeResult()
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            for n, span in enumerate(scope_spans.spans):
                try:
                    if bad_ids and (r, s, n) in bad_ids:
                        raise SpanRejected(bad_ids[r, s, n])
                    result.spans.append(_span(span, resource, scope.name, scope.version))
                except SpanRejected as exc:
                    where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                    result.rejected.append(f"{where} ({span.name!r}): {exc}")
    return result


def _span(span, resource, scope_name, scope_version):
    notes = []
    trace_id = hex_id(span.trace_id, 16, "trace_id")
    span_id = hex_id(span.span_id, 8, "span_id")
    # Empty or all zeros is how OTLP says "root span".
    parent = hex_id(span.parent_span_id, 8, "parent_span_id") if any(span.parent_span_id) else None

    links = []
    for i, link in enumerate(span.links[: MAX_ITEMS + 1]):
        links.append({
            "trace_id": hex_id(link.trace_id, 16, f"link {i} trace_id"),
            "span_id": hex_id(link.span_id, 8, f"link {i} span_id"),
            "attributes": capped(_attributes(link.attributes), "link attributes", notes),
        })
    events = [
        {
            "time_us": micros(event.time_unix_nano),
            "name": event.name,
            "attributes": capped(_attributes(event.attributes), "event attributes", notes),
        }
        for event in span.events[: MAX_ITEMS + 1]
    ]

    kind = _KINDS.get(span.kind)
    if kind is None:
        notes.append(f"unknown span kind {span.kind}")
        kind = ""
    status_code = _STATUS.get(span.status.code)
    if status_code is None:
        notes.append(f"unknown status code {span.status.code}: status unset")
        status_code = "unset"
    service = resource.get("service.name")
    if not service:
        notes.append("no service.name in the resource: unknown_service")
        service = "unknown_service"
    tags = _attributes(span.attributes)
    if scope_version:
        tags.setdefault("otel.scope.version", scope_version)

    return make_span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        service=str(service),
        operation=span.name,
        kind=kind,
        start_us=micros(span.start_time_unix_nano),
        duration_us=micros(span.end_time_unix_nano - span.start_time_unix_nano),
        status_code=status_code,
        status_message=span.status.message,
        tags=tags,
        resource=dict(resource),
        events=events,
        links=links,
        scope=scope_name,
        notes=notes,
    )


def _attributes(key_values):
    return {kv.key: _any_value(kv.value) for kv in key_values}


def _any_value(value):
    which = value.WhichOneof("value")
    if which in _PLAIN:
        return getattr(value, which)
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return json_value(getattr(value, which))


_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))


def _hex_ids_to_base64(document):
    """Rewrite OTLP/JSON's hex ids as the base64 that protobuf's JSON parser expects.

    Returns {(resource, scope, span) position: reason} for spans with an id that
    is not hex; such an id is blanked so the rest of the document still parses.
    """
    bad = {}
    for r, resource_spans in _items(document, "resourceSpans", "resource_spans"):
        for s, scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for n, span in _items(scope_spans, "spans", "spans"):
                reasons = [_rewrite_id(span, camel, snake) for camel, snake in _ID_FIELDS]
                for i, link in _items(span, "links", "links"):
                    reasons += [_rewrite_id(link, camel, snake, f"link {i} ") for camel, snake in _ID_FIELDS[:2]]
                reasons = [reason for reason in reasons if reason]
                if reasons:
                    bad[r, s, n] = "; ".join(reasons)
    return bad


def _items(parent, camel, snake):
    if not isinstance(parent, dict):
        return []
    items = parent.get(camel, parent.get(snake))
    return enumerate(items) if isinstance(items, list) else []


def _rewrite_id(obj, camel, snake, prefix=""):
    if not isinstance(obj, dict):
        return None
    key = camel if camel in obj else snake
    value = obj.get(key)
    if not isinstance(value, str):
        return None
    try:
        obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError:
        obj[key] = ""
        return f"{prefix}{snake} is not hex: {value[:40]!r}"
    return None
