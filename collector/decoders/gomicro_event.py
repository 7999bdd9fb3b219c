"""Go Micro events: ``events.Event`` as the natsjs stream stores it, a JSON object
``{"ID","Topic","Timestamp","Metadata":{..},"Payload":<base64 of the user's bytes>}``."""

from __future__ import annotations

from collector.decoders.common import _label, _metadata, _time
from collector.decoders.payload import _base64_payload
from collector.decoders.result import _Draft


def _gomicro_event(doc, notes, rules):
    draft = _Draft("gomicro-event", notes)
    draft.event_id = _label(doc.get("ID"), "ID", notes, rules, numbers=True)
    meta = _metadata(doc, "Metadata", draft)
    draft.time = _time(doc.get("Timestamp"), "Timestamp", notes)
    draft.payload = _base64_payload(doc["Payload"], "Payload", meta.get("content-type"), notes, rules)
    return draft
