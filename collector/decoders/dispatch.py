"""The dispatcher: a raw broker message (subject, headers, bytes) becomes a `Decoded`.

Pure functions without I/O. `decode()` never raises: whatever cannot be understood is described in
`Decoded.note`, and the store keeps the raw bytes whatever happens here.

Formats, tried in this order (the first that matches wins):

- ``cloudevents-binary``: a ``ce-specversion`` header (also the Kafka ``ce_`` and AMQP ``cloudEvents:`` /
  ``cloudEvents_`` prefixes); the body is the event data.
- empty body: ``raw`` with the note "empty message"; bytes that are not UTF-8: ``raw``; UTF-8 that is not JSON:
  ``text``. Their payload is None (the raw bytes are the message); headers still give type, version, ids.
- a JSON object with ``specversion``: ``cloudevents`` (structured mode, ``data`` or ``data_base64``).
- a JSON object with ``Payload`` and ``Topic`` or ``ID``: ``gomicro-event`` (Go Micro's ``events.Event``
  as the natsjs stream stores it; ``Payload`` is base64 of the user's bytes).
- a JSON object with ``Header`` and ``Body``: ``gomicro-broker`` (Go Micro's ``broker.Message``).
- a JSON object with ``body`` and ``type`` or ``version``: ``envelope``. A string body is taken as JSON text
  when it parses as an object or array, else as base64 of JSON when it decodes to one, else kept as the string.
- any other JSON value: ``json``.

Type, version, producer, key and event id come from the envelope's own fields first, then from its metadata
(Go Micro ``Metadata``, broker ``Header``), then from the message headers, then from fields of a JSON object
payload; header names match case-insensitively. A type ending in a version (``order.created.v2``) is split;
a schema URL (``.../v2``) gives the version when nothing else does. Trace context comes from W3C
``traceparent``, Jaeger ``uber-trace-id`` or B3, found in the envelope first, then in the headers.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.decoders.cloudevents import (
    _CE_PREFIXES,
    _cloudevents,
    _cloudevents_binary,
)
from collector.decoders.common import (
    _clean_note,
    _found,
    _header_values,
    _label,
    _lowered,
)
from collector.decoders.envelope import _envelope
from collector.decoders.gomicro_broker import _gomicro_broker
from collector.decoders.gomicro_event import _gomicro_event
from collector.decoders.payload import _loads, _TooDeep
from collector.decoders.raw import _empty, _json, _unparsed
from collector.decoders.result import Decoded
from collector.decoders.rules import DEFAULT_RULES, Rules
from collector.decoders.tracecontext import _trace_from


def decode(subject: str, headers: Mapping[str, str] | None, data: bytes, rules: Rules = DEFAULT_RULES) -> Decoded:
    """Decode one broker message. Never raises."""
    try:
        return _decode(subject, headers, data, rules)
    except Exception as exc:  # a decoder bug must not stop ingestion: the raw bytes are still stored
        note = _clean_note(f"decoder failed: {type(exc).__name__}: {exc}")
        return Decoded("raw", None, None, None, None, None, None, None, None, None, note)


def _decode(subject, headers, data, rules):
    notes = []
    hdrs = _lowered(headers) if headers else {}
    if data is None:
        data = b""
    elif type(data) is not bytes:
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if hdrs:
        for prefix in _CE_PREFIXES:
            if prefix + "specversion" in hdrs:
                return _finish(_cloudevents_binary(hdrs, prefix, data, notes, rules), hdrs, subject, rules)
    if not data:
        return _finish(_empty(notes), hdrs, subject, rules)
    try:
        doc, origin = _loads(data)
    except (ValueError, _TooDeep) as exc:  # UnicodeDecodeError is a ValueError too
        return _finish(_unparsed(exc, notes), hdrs, subject, rules)
    if type(doc) is dict:
        if "specversion" in doc:
            draft = _cloudevents(doc, origin, notes, rules)
        elif "Payload" in doc and ("Topic" in doc or "ID" in doc):
            draft = _gomicro_event(doc, notes, rules)
        elif "Header" in doc and "Body" in doc:
            draft = _gomicro_broker(doc, notes, rules)
        elif "body" in doc and ("type" in doc or "version" in doc):
            draft = _envelope(doc, origin, notes, rules)
        else:
            draft = _json(doc, origin, notes, rules)
    else:
        draft = _json(doc, origin, notes, rules)
    return _finish(draft, hdrs, subject, rules)


def _finish(draft, hdrs, subject, rules):
    notes = draft.notes
    maps = draft.maps
    maps.append(hdrs)
    found = _header_values(maps, rules._index) if any(maps) else {}
    payload = draft.payload if type(draft.payload) is dict else None
    event_id, type_, version, producer, key = draft.event_id, draft.type, draft.version, draft.producer, draft.key
    if found or payload is not None:  # the common message with neither skips the lookups
        paths = rules._paths
        if event_id is None:
            event_id = _found(found, "id", notes, rules, True) \
                or _from_payload(payload, paths["payload_id_fields"], notes, rules, True)
        if type_ is None:
            type_ = _found(found, "type", notes, rules, False) \
                or _from_payload(payload, paths["payload_type_fields"], notes, rules, False)
        if version is None:
            version = _found(found, "version", notes, rules, True) \
                or _from_payload(payload, paths["payload_version_fields"], notes, rules, True)
        if producer is None:
            producer = _found(found, "producer", notes, rules, False)
        if key is None:
            key = _found(found, "key", notes, rules, True)
    if type_ is None and rules.type_from_subject:
        type_ = _label(subject, "subject", notes, rules)

    if type_ is not None:
        match = rules._suffix.match(type_)
        if match:
            if "type" in match.re.groupindex and match["type"]:
                type_ = match["type"]
            version = version or match["version"] or None
    if version is None:
        schema = draft.schema or _found(found, "schema", notes, rules, False)
        if schema is not None:
            match = rules._schema.search(schema)
            if match:
                version = match["version"] or None
    if version is not None and len(version) > 1 and version[0] in "vV" and version[1].isdigit():
        version = version[1:]

    trace_id = span_id = None
    for source in draft.trace_maps:
        trace_id, span_id = _trace_from(source)
        if trace_id:
            break
    else:
        if hdrs:
            trace_id, span_id = _trace_from(hdrs)

    note = _clean_note("; ".join(notes)) if notes else None
    return Decoded(draft.format, event_id, type_, version, producer, key, trace_id, span_id, draft.time,
                   draft.payload, note)


def _from_payload(payload, paths, notes, rules, numbers):
    """The first usable label among payload fields. They are the user's data, not an envelope: a field of
    another type is simply not the one meant, so it is skipped without a note."""
    if payload is None:
        return None
    for path in paths:
        value = payload
        for step in path:
            value = value.get(step) if type(value) is dict else None
        kind = type(value)
        if kind is str or (numbers and (kind is int or kind is float)):
            label = _label(value, f"payload field {'.'.join(path)}", notes, rules, numbers)
            if label is not None:
                return label
    return None
