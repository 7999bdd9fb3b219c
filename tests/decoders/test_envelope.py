"""The versioned envelope: its own fields, a body that is an object, JSON text, base64 or just a string."""

import base64
import json
from datetime import datetime, timezone

import pytest

from collector.decoders import Decoded, decode

from .producers import go_json


def test_envelope_gives_type_version_time_id_producer_and_object_body():
    """{"type","version","timestamp","body"} with id and source: all of them land in their fields."""
    data = go_json({"id": "e-1", "type": "order.created", "version": 2, "source": "checkout", "key": "o-1",
                    "timestamp": "2026-11-27T10:00:00Z", "body": {"order_id": "o-1"}})

    decoded = decode("orders", None, data)

    assert decoded == Decoded(
        format="envelope", event_id="e-1", type="order.created", version="2", producer="checkout", key="o-1",
        trace_id=None, span_id=None, time=datetime(2026, 11, 27, 10, tzinfo=timezone.utc),
        payload={"order_id": "o-1"}, note=None,
    )


@pytest.mark.parametrize("body", [
    json.dumps({"order_id": "o-1"}),
    base64.b64encode(json.dumps({"order_id": "o-1"}).encode()).decode(),
], ids=["json-text", "base64-json"])
def test_envelope_string_body_holding_json_text_or_base64_json_is_parsed(body):
    """A body that is JSON text, or base64 of JSON bytes, becomes the JSON value it encodes."""
    decoded = decode("orders", None, go_json({"type": "order.created", "version": "1", "body": body}))

    assert decoded.payload == {"order_id": "o-1"}
    assert decoded.note is None


def test_envelope_string_body_that_is_just_text_is_kept_as_the_string():
    """A short word is valid base64 too; it is not decoded as such unless it hides JSON."""
    decoded = decode("orders", None, go_json({"type": "greeting", "version": "1", "body": "test"}))

    assert decoded.payload == "test"


def test_envelope_unix_epoch_milliseconds_timestamp_is_understood():
    """A number timestamp is read as seconds, milliseconds, microseconds or nanoseconds by its size."""
    decoded = decode("t", None, go_json({"type": "a", "version": 1, "timestamp": 1795773600123, "body": 1}))

    assert decoded.time == datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=timezone.utc)


def test_envelope_with_a_number_type_notes_it_and_falls_back_to_the_type_header():
    """"type": 7 is no type: the note says so, and the message's type header is used instead."""
    data = go_json({"type": 7, "version": "v3", "body": {}})

    decoded = decode("orders", {"Event-Type": "order.created"}, data)

    assert (decoded.format, decoded.type, decoded.version) == ("envelope", "order.created", "3")
    assert decoded.note == "type is a number, not a string"
