"""Messages as their real producers write them, shared by the decoder tests."""

import base64
import json

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"


def go_json(value) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def gomicro_event(payload: bytes | None, *, metadata=None, id="4e4f7a1c-5e1b-4f7e-9a43-1f0d2c3b4a59",
                  topic="orders", timestamp="2026-11-27T10:00:00.123456789Z") -> bytes:
    """go-micro events/natsjs: json.Marshal(events.Event{...}); []byte marshals as standard base64."""
    return go_json({
        "ID": id,
        "Topic": topic,
        "Timestamp": timestamp,
        "Metadata": metadata,
        "Payload": None if payload is None else base64.b64encode(payload).decode(),
    })


def gomicro_broker(body: bytes, header: dict) -> bytes:
    """go-micro broker: json.Marshal(broker.Message{Header, Body})."""
    return go_json({"Header": header, "Body": base64.b64encode(body).decode()})
