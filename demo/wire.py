"""The wire formats the shop speaks, as pure functions.

`encode` turns one event into (payload, headers) in a chosen format; `decode` recognises any of
them again. Trace context and the producer travel in NATS headers for every format, and also
inside the envelope where the format has a place for them (Go Micro metadata and headers,
CloudEvents extension attributes), as the real libraries do.
"""
import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

ENVELOPE = "envelope"
CLOUDEVENTS_STRUCTURED = "cloudevents-structured"
CLOUDEVENTS_BINARY = "cloudevents-binary"
GOMICRO_EVENTS = "gomicro-events"
GOMICRO_BROKER = "gomicro-broker"
FORMATS = (ENVELOPE, CLOUDEVENTS_STRUCTURED, CLOUDEVENTS_BINARY, GOMICRO_EVENTS, GOMICRO_BROKER)

SCHEMA_BASE = "https://schemas.shop.example"
TRACE_KEYS = ("traceparent", "tracestate", "uber-trace-id")


class DecodeError(ValueError):
    pass


@dataclass
class Event:
    type: str
    body: dict
    id: str
    producer: str
    version: int = 1
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # Trace context found in the message (headers win over envelope fields).
    carrier: dict = field(default_factory=dict)
    format: str = ""


def rfc3339(moment):
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text):
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return datetime.now(timezone.utc)


def schema_url(event_type, version):
    return f"{SCHEMA_BASE}/{event_type}/v{version}"


def version_from_schema(url):
    tail = (url or "").rstrip("/").rsplit("/", 1)[-1]
    return int(tail[1:]) if tail[:1] == "v" and tail[1:].isdigit() else 1


def _b64(data):
    return base64.b64encode(data).decode()


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def encode(fmt, subject, event, trace):
    """(payload, headers) for `event` published on `subject` in format `fmt`.

    `trace` holds the propagation headers of the producer span (traceparent, ...)."""
    headers = {"Nats-Msg-Id": event.id, "Micro-From-Service": event.producer, **trace}
    timestamp = rfc3339(event.time)
    body = _dumps(event.body)
    if fmt == ENVELOPE:
        payload = {"type": event.type, "version": event.version, "timestamp": timestamp, "body": event.body}
        headers["Content-Type"] = "application/json"
        return _dumps(payload), headers
    if fmt == CLOUDEVENTS_STRUCTURED:
        payload = {
            "specversion": "1.0",
            "id": event.id,
            "source": event.producer,
            "type": event.type,
            "time": timestamp,
            "datacontenttype": "application/json",
            "dataschema": schema_url(event.type, event.version),
            **{key: value for key, value in trace.items() if key in ("traceparent", "tracestate")},
            "data": event.body,
        }
        headers["Content-Type"] = "application/cloudevents+json"
        return _dumps(payload), headers
    if fmt == CLOUDEVENTS_BINARY:
        headers.update({
            "ce-specversion": "1.0",
            "ce-id": event.id,
            "ce-source": event.producer,
            "ce-type": event.type,
            "ce-time": timestamp,
            "ce-dataschema": schema_url(event.type, event.version),
            "Content-Type": "application/json",
        })
        if "traceparent" in trace:
            headers["ce-traceparent"] = trace["traceparent"]
        return body, headers
    # Go Micro carries everything in string maps inside the JSON, next to a base64 body.
    micro = {
        "Content-Type": "application/json",
        "Micro-From-Service": event.producer,
        "Event-Type": event.type,
        "Event-Version": str(event.version),
        **trace,
    }
    if fmt == GOMICRO_EVENTS:
        payload = {"ID": event.id, "Topic": subject, "Timestamp": timestamp, "Metadata": micro, "Payload": _b64(body)}
        return _dumps(payload), headers
    if fmt == GOMICRO_BROKER:
        payload = {"Header": {"Micro-Topic": subject, "Micro-Id": event.id, **micro}, "Body": _b64(body)}
        return _dumps(payload), headers
    raise ValueError(f"unknown wire format {fmt!r}")


def _trace_from(mapping):
    return {key: mapping[key] for key in TRACE_KEYS if isinstance(mapping.get(key), str)}


def _json_body(raw):
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise DecodeError(f"body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise DecodeError("body is not a JSON object")
    return body


def detect(data, headers):
    """The name of the format of a message, or None for anything else."""
    headers = headers or {}
    if "ce-specversion" in headers:
        return CLOUDEVENTS_BINARY
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if "specversion" in doc:
        return CLOUDEVENTS_STRUCTURED
    if {"Header", "Body"} <= doc.keys():
        return GOMICRO_BROKER
    if {"ID", "Topic", "Payload"} <= doc.keys():
        return GOMICRO_EVENTS
    if {"type", "version", "body"} <= doc.keys():
        return ENVELOPE
    return None


def decode(data, headers):
    """The Event in a message of any of FORMATS; DecodeError for anything else."""
    headers = dict(headers or {})
    fmt = detect(data, headers)
    if fmt is None:
        raise DecodeError("not one of the shop's wire formats")
    producer = headers.get("Micro-From-Service", "")
    if fmt == CLOUDEVENTS_BINARY:
        event = Event(
            type=headers.get("ce-type", ""),
            body=_json_body(data),
            id=headers.get("ce-id", ""),
            producer=headers.get("ce-source", producer),
            version=version_from_schema(headers.get("ce-dataschema")),
            time=parse_time(headers.get("ce-time")),
            carrier={"traceparent": headers["ce-traceparent"]} if "ce-traceparent" in headers else {},
        )
    else:
        doc = json.loads(data)
        if fmt == CLOUDEVENTS_STRUCTURED:
            event = Event(
                type=doc.get("type", ""),
                body=doc.get("data") or {},
                id=doc.get("id", ""),
                producer=doc.get("source", producer),
                version=version_from_schema(doc.get("dataschema")),
                time=parse_time(doc.get("time")),
                carrier=_trace_from(doc),
            )
        elif fmt == ENVELOPE:
            event = Event(
                type=doc["type"],
                body=doc["body"],
                id=headers.get("Nats-Msg-Id", ""),
                producer=producer,
                version=int(doc["version"]),
                time=parse_time(doc.get("timestamp")),
            )
        else:
            micro = doc["Metadata"] if fmt == GOMICRO_EVENTS else doc["Header"]
            raw = doc["Payload"] if fmt == GOMICRO_EVENTS else doc["Body"]
            try:
                body = _json_body(base64.b64decode(raw or ""))
            except (TypeError, ValueError) as error:
                raise DecodeError(f"payload is not base64 JSON: {error}") from None
            event = Event(
                type=micro.get("Event-Type", doc.get("Topic", micro.get("Micro-Topic", ""))),
                body=body,
                id=doc.get("ID") or micro.get("Micro-Id", ""),
                producer=micro.get("Micro-From-Service", producer),
                version=int(micro.get("Event-Version", 1)),
                time=parse_time(doc.get("Timestamp")),
                carrier=_trace_from(micro),
            )
    event.carrier.update(_trace_from(headers))
    event.format = fmt
    return event
