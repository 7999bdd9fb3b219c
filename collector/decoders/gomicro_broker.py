"""Go Micro broker messages: ``broker.Message`` as JSON,
``{"Header":{"Micro-Topic":..,"Micro-Id":..,"Content-Type":..},"Body":<base64>}``."""

from __future__ import annotations

from collector.decoders.common import _metadata
from collector.decoders.payload import _base64_payload
from collector.decoders.result import _Draft


def _gomicro_broker(doc, notes, rules):
    draft = _Draft("gomicro-broker", notes)
    header = _metadata(doc, "Header", draft)
    draft.payload = _base64_payload(doc["Body"], "Body", header.get("content-type"), notes, rules)
    return draft
