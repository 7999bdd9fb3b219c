"""CloudEvents 1.0: structured mode (a JSON object with ``specversion``; ``data`` or ``data_base64``) and
binary mode (a ``ce-specversion`` header, also the Kafka ``ce_`` and AMQP ``cloudEvents:`` /
``cloudEvents_`` prefixes; the body is the event data)."""

from __future__ import annotations

from urllib.parse import unquote

from collector.decoders.common import _found, _header_values, _label, _short, _time
from collector.decoders.payload import _base64_payload, _bytes_payload, _checked
from collector.decoders.result import _Draft

_CE_PREFIXES = ("ce-", "ce_", "cloudevents:", "cloudevents_")


def _cloudevents_common(attrs, draft, rules):
    notes = draft.notes
    spec = attrs.get("specversion")
    if spec != "1.0":
        notes.append(f'specversion {_short(spec)} is not "1.0"; read as 1.0')
    for required in ("id", "source", "type"):
        if attrs.get(required) is None:
            notes.append(f"CloudEvent without {required}")
    draft.event_id = _label(attrs.get("id"), "id", notes, rules)
    draft.type = _label(attrs.get("type"), "type", notes, rules)
    draft.producer = _label(attrs.get("source"), "source", notes, rules)
    draft.schema = _label(attrs.get("dataschema"), "dataschema", notes, rules)
    draft.time = _time(attrs.get("time"), "time", notes)
    found = _header_values([attrs], rules._ce_index)
    draft.version = _found(found, "version", notes, rules, True)
    draft.key = _found(found, "key", notes, rules, True)
    draft.trace_maps.append(attrs)


def _cloudevents(doc, origin, notes, rules):
    draft = _Draft("cloudevents", notes)
    _cloudevents_common(doc, draft, rules)
    if "data" in doc:
        if "data_base64" in doc:
            notes.append("both data and data_base64; data used")
        draft.payload = _checked(doc["data"], origin, "data", notes, rules)
    elif "data_base64" in doc:
        draft.payload = _base64_payload(doc["data_base64"], "data_base64", doc.get("datacontenttype"), notes, rules)
    return draft


def _cloudevents_binary(hdrs, prefix, data, notes, rules):
    draft = _Draft("cloudevents-binary", notes)
    size = len(prefix)
    attrs = {}
    for name, value in hdrs.items():
        if name.startswith(prefix):
            # The HTTP binding percent-encodes characters that headers cannot carry.
            attrs[name[size:]] = unquote(value) if type(value) is str and "%" in value else value
    _cloudevents_common(attrs, draft, rules)
    content_type = attrs.get("datacontenttype") or hdrs.get("content-type")
    draft.payload = _bytes_payload(data, "data", content_type, notes, rules)
    return draft
