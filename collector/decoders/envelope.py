"""The versioned envelope: a JSON object with ``body`` and ``type`` or ``version`` (``{"type","version",
"timestamp","body"}``, often with ``id``, ``source`` and ``metadata``). A string body is taken as JSON text
when it parses as an object or array, else as base64 of JSON when it decodes to one, else kept as the string."""

from __future__ import annotations

import binascii

from collector.decoders.common import _first_label, _label, _metadata, _time
from collector.decoders.payload import _checked, _loads, _TooDeep
from collector.decoders.result import _Draft


def _envelope(doc, origin, notes, rules):
    draft = _Draft("envelope", notes)
    draft.type = _label(doc.get("type"), "type", notes, rules)
    draft.version = _label(doc.get("version"), "version", notes, rules, numbers=True)
    draft.event_id = _label(doc.get("id"), "id", notes, rules, numbers=True)
    draft.producer = _first_label(doc, ("producer", "source", "service"), notes, rules)
    draft.key = _label(doc.get("key"), "key", notes, rules, numbers=True)
    draft.schema = _first_label(doc, ("dataschema", "schema"), notes, rules)
    stamp = doc.get("timestamp")
    draft.time = _time(doc.get("time") if stamp is None else stamp, "timestamp", notes)
    _metadata(doc, "metadata", draft)
    draft.trace_maps.insert(0, doc)
    body = doc["body"]
    if type(body) is str:
        body = _string_body(body, notes, rules)
    else:
        body = _checked(body, origin, "body", notes, rules)
    draft.payload = body
    return draft


def _string_body(body, notes, rules):
    """A string body is JSON text, base64 of JSON, or just a string, in that order of belief."""
    start = body.lstrip()[:1]
    if start == "{" or start == "[":
        try:
            value, origin = _loads(body.encode("utf-8"))
            return _checked(value, origin, "body", notes, rules)
        except (ValueError, _TooDeep):  # UnicodeEncodeError (a lone surrogate) is a ValueError too
            pass
    elif len(body) >= 4 and len(body) % 4 == 0:
        try:
            raw = binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw[:1] in (b"{", b"["):
            try:
                value, origin = _loads(raw)
                return _checked(value, origin, "body", notes, rules)
            except (ValueError, _TooDeep):
                pass
    return _checked(body, None, "body", notes, rules)
