"""What decoding produces: a `Decoded`, one of `FORMATS`. A format decoder fills in a `_Draft`;
`dispatch._finish` completes it from headers and payload fields and turns it into the `Decoded`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FORMATS = ("gomicro-event", "gomicro-broker", "envelope", "cloudevents", "cloudevents-binary", "json", "text", "raw")


@dataclass(frozen=True)
class Decoded:
    format: str  # one of FORMATS
    event_id: str | None
    type: str | None
    version: str | None
    producer: str | None
    key: str | None
    trace_id: str | None  # 32 lowercase hex
    span_id: str | None  # 16 lowercase hex
    time: datetime | None  # aware UTC, from the envelope
    payload: object | None  # JSON value safe for jsonb
    note: str | None  # what could not be decoded, None when everything was


class _Draft:
    """What a format decoder found; `_finish` fills the gaps from headers and payload fields."""

    __slots__ = ("format", "notes", "maps", "trace_maps", "event_id", "type", "version", "producer", "key",
                 "schema", "time", "payload")

    def __init__(self, format, notes):
        self.format = format
        self.notes = notes
        self.maps = []  # lowered metadata maps, searched before the message headers
        self.trace_maps = []
        self.event_id = self.type = self.version = self.producer = self.key = None
        self.schema = self.time = self.payload = None
