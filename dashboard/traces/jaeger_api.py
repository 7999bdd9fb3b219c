"""A Jaeger-compatible query API under /jaeger/api/, so Grafana's Jaeger data source
(URL `<host>/jaeger`, a Bearer token) and Jaeger's own UI can read Eventscope.

Responses have the shapes of Jaeger's query service (`structuredResponse` of
cmd/query/app/http_handler.go around the `model/json` types): `{"data", "total",
"limit", "offset", "errors"}`; times are microseconds since the epoch; ids are
lowercase hex, a trace id without its high half written as 16 digits.
"""
from datetime import datetime, timedelta, timezone

from django.http import JsonResponse

from collector.topology import readers as topology
from collector.traces import readers
from dashboard.timewindow import BadWindow, Window, check_span

DEFAULT_LOOKBACK = timedelta(hours=1)
# Caps on what one request may ask for; over them the answer is 400 with the reason.
MAX_LIMIT = 1500
MAX_TRACE_IDS = 100
KINDS = {"server", "client", "producer", "consumer", "internal"}


def _response(data, status=200, errors=None, total=None):
    total = total if total is not None else (len(data) if isinstance(data, list) else 0)
    return JsonResponse({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors},
                        status=status, json_dumps_params={"ensure_ascii": False})


def _error(status, message, trace_id=None):
    error = {"code": status, "msg": message}
    if trace_id:
        error["traceID"] = trace_id
    return _response(None, status=status, errors=[error], total=0)


def jaeger_trace_id(trace_id):
    """Jaeger's spelling: 16 hex digits when the high half is zero, else 32."""
    return trace_id[16:] if trace_id.startswith("0" * 16) else trace_id


def services(request):
    return _response(readers.services())


def service_operations(request, service):
    return _response(sorted({name for name, _ in readers.operations(service)}))


def operations(request):
    """`/api/operations?service=&spanKind=`: [{"name", "spanKind"}] (Jaeger's newer endpoint)."""
    service = request.GET.get("service", "")
    if not service:
        return _error(400, "parameter 'service' is required")
    kind = request.GET.get("spanKind", "") or None
    return _response([{"name": name, "spanKind": kind_} for name, kind_ in readers.operations(service, kind)])


def _micros(params, name):
    value = params.get(name)
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1_000_000, timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise readers.BadQuery(f"parameter '{name}' must be microseconds since the epoch") from None


def traces(request):
    """`/api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=`
    (start and end in µs; durations like 1.2s or 100ms; tags JSON {"k":"v"} or k=v)."""
    import json

    params = request.GET
    try:
        if params.getlist("traceID"):
            wanted = params.getlist("traceID")
            if len(wanted) > MAX_TRACE_IDS:
                raise readers.BadQuery(f"{len(wanted)} traceID values: at most {MAX_TRACE_IDS} in one request")
            found = readers.summaries(ident for ident in map(readers.normalise_trace_id, wanted) if ident)
            return _response(_traces_json(found.values()))
        end = _micros(params, "end") or datetime.now(timezone.utc)
        start = _micros(params, "start") or end - _lookback(params.get("lookback"))
        check_span(start, end)
        tags = {}
        for raw in params.getlist("tags"):
            raw = raw.strip()
            tags.update({str(k): str(v) for k, v in json.loads(raw).items()} if raw.startswith("{")
                        else readers.parse_tags(raw))
        tags.update(readers.parse_tags(params.getlist("tag")) if params.getlist("tag") else {})
        limit = int(params.get("limit") or 20)
        if not 1 <= limit <= MAX_LIMIT:
            raise readers.BadQuery(f"limit={limit}: from 1 to {MAX_LIMIT} traces")
        query = readers.Search(
            service=params.get("service", ""), operation=params.get("operation", ""), tags=tags,
            min_duration_us=readers.parse_duration_us(params.get("minDuration")),
            max_duration_us=readers.parse_duration_us(params.get("maxDuration")),
            limit=limit,
        )
        summaries = readers.search(Window(start, end, None), query)
    except (readers.BadQuery, BadWindow, ValueError) as error:
        return _error(400, str(error))
    except OverflowError:  # start = end - lookback before the year 1
        return _error(400, "start, end and lookback must give times between the years 1 and 9999")
    return _response(_traces_json(summaries))


def _traces_json(summaries):
    """Many traces in Jaeger's shape, their spans read in one query."""
    summaries = list(summaries)
    spans = readers.spans_of_traces(summaries)
    return [_trace_json(found.trace_id, found, spans[found.trace_id]) for found in summaries]


def _lookback(text):
    from dashboard.timewindow import BadWindow, parse_duration

    if not text or text == "custom":
        return DEFAULT_LOOKBACK
    try:
        return parse_duration(text)
    except BadWindow as error:
        raise readers.BadQuery(str(error)) from None


def trace(request, trace_id):
    ident = readers.normalise_trace_id(trace_id)
    if ident is None:
        return _error(400, f"malformed trace id {trace_id!r}")
    summary = readers.summary(ident)
    if summary is None:
        return _error(404, "trace not found", jaeger_trace_id(ident))
    return _response([_trace_json(ident, summary)])


def dependencies(request):
    """`/api/dependencies?endTs=<ms>&lookback=<ms>`: [{"parent", "child", "callCount"}]: calls seen
    in spans and messaging edges through topics."""
    try:
        end_ms = int(request.GET.get("endTs") or datetime.now(timezone.utc).timestamp() * 1000)
        lookback_ms = int(request.GET.get("lookback") or 24 * 3600 * 1000)
    except ValueError:
        return _error(400, "endTs and lookback must be milliseconds")
    if lookback_ms < 0:
        return _error(400, "lookback must not be negative")
    try:
        end = datetime.fromtimestamp(end_ms / 1000, timezone.utc)
        start = end - timedelta(milliseconds=lookback_ms)
    except (ValueError, OverflowError, OSError):
        return _error(400, "endTs and lookback must give times between the years 1 and 9999")
    calls = {(parent, child): count for parent, child, count in readers.dependencies(start, end)}
    # Messaging edges (producer service -> consumer service through a topic), from the topology.
    for parent, child, count in topology.messaging_dependencies(start, end):
        calls[(parent, child)] = calls.get((parent, child), 0) + count
    return _response([{"parent": parent, "child": child, "callCount": count}
                      for (parent, child), count in sorted(calls.items())])


# --- model/json ------------------------------------------------------------------


def _trace_json(trace_id, summary=None, spans=None):
    spans = readers.spans(trace_id, summary) if spans is None else spans
    processes, process_of = {}, {}
    for span in spans:
        key = (span.service, tuple(sorted((k, str(v)) for k, v in span.resource.items())))
        if key not in process_of:
            process_of[key] = f"p{len(process_of) + 1}"
            processes[process_of[key]] = {"serviceName": span.service, "tags": _key_values(span.resource)}
        span.process_id = process_of[key]
    jaeger_id = jaeger_trace_id(trace_id)
    return {"traceID": jaeger_id, "spans": [_span_json(jaeger_id, span) for span in spans],
            "processes": processes, "warnings": None}


def _span_json(jaeger_id, span):
    references = []
    if span.parent_span_id:
        references.append({"refType": "CHILD_OF", "traceID": jaeger_id, "spanID": span.parent_span_id})
    for link in span.links:
        references.append({"refType": "FOLLOWS_FROM", "traceID": jaeger_trace_id(link["trace_id"]),
                           "spanID": link["span_id"]})
    tags = dict(span.tags)
    if span.kind in KINDS:
        tags["span.kind"] = span.kind
    if span.error:
        tags["error"] = True
    if span.status_code != "unset":
        tags["otel.status_code"] = span.status_code.upper()
    if span.status_message:
        tags["otel.status_description"] = span.status_message
    start_us = int(span.start.timestamp() * 1_000_000)
    return {
        "traceID": jaeger_id,
        "spanID": span.span_id,
        "flags": 1,
        "operationName": span.operation,
        "references": references,
        "startTime": start_us,
        "duration": span.duration_us,
        "tags": _key_values(tags),
        "logs": [{"timestamp": event.get("time_us", start_us),
                  "fields": _key_values({"event": event.get("name", ""), **(event.get("attributes") or {})})}
                 for event in span.events],
        "processID": span.process_id,
        "warnings": list(span.notes.split("; ")) if span.notes else None,
    }


def _key_values(mapping):
    return [_key_value(key, value) for key, value in mapping.items()]


def _key_value(key, value):
    import json

    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value, ensure_ascii=False)}
