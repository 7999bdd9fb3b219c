"""Go Micro events as the natsjs stream stores them, and every kind of bad field in one."""

from datetime import datetime, timedelta, timezone

from collector.decoders import Decoded, decode

from .producers import SPAN, TRACE, TRACEPARENT, go_json, gomicro_event


def test_go_micro_event_gives_id_time_producer_trace_and_the_json_payload():
    """A natsjs event decodes to its ID, its nanosecond timestamp (cut to microseconds, UTC), the producer
    and trace context from Metadata, and the base64 Payload parsed as JSON."""
    data = gomicro_event(
        go_json({"order_id": "o-1", "total": 12.5}),
        metadata={"Micro-From-Service": "checkout", "Traceparent": TRACEPARENT, "Version": "v2"},
    )

    decoded = decode("orders", {}, data)

    assert decoded == Decoded(
        format="gomicro-event", event_id="4e4f7a1c-5e1b-4f7e-9a43-1f0d2c3b4a59", type=None, version="2",
        producer="checkout", key=None, trace_id=TRACE, span_id=SPAN,
        time=datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=timezone.utc),
        payload={"order_id": "o-1", "total": 12.5}, note=None,
    )


def test_go_micro_event_takes_type_and_version_from_its_payload_fields():
    """Without metadata naming them, a "type" field in the payload gives the type and its suffix the version."""
    decoded = decode("orders", None, gomicro_event(go_json({"type": "order.created.v3", "id": 7})))

    assert (decoded.type, decoded.version) == ("order.created", "3")


def test_go_micro_event_time_with_an_offset_is_converted_to_utc():
    """Go writes local times with their offset; the decoded time is the same instant in UTC."""
    decoded = decode("orders", None, gomicro_event(b"{}", timestamp="2026-11-27T12:30:00.5+02:00"))

    assert decoded.time == datetime(2026, 11, 27, 10, 30, 0, 500000, tzinfo=timezone.utc)
    assert decoded.time.utcoffset() == timedelta(0)


def test_go_micro_event_with_go_zero_time_nil_metadata_and_nil_payload_decodes_cleanly():
    """Go's zero time means no time; a nil map and a nil slice marshal as null and are simply absent."""
    decoded = decode("orders", None, gomicro_event(None, metadata=None, timestamp="0001-01-01T00:00:00Z"))

    assert decoded.format == "gomicro-event"
    assert (decoded.time, decoded.payload, decoded.note) == (None, None, None)


def test_go_micro_event_with_a_text_payload_keeps_the_text_and_says_it_is_not_json():
    """A payload of plain text is kept as a JSON string, with a note."""
    decoded = decode("orders", None, gomicro_event("hello, wörld".encode()))

    assert decoded.payload == "hello, wörld"
    assert decoded.note.startswith("Payload is not JSON")


def test_go_micro_event_with_a_binary_payload_stores_no_payload_and_gives_its_size():
    """A protobuf or other binary payload cannot be JSON; the note names its size."""
    decoded = decode("orders", None, gomicro_event(b"\x08\x96\x01\xff\xfe"))

    assert decoded.format == "gomicro-event"
    assert decoded.payload is None
    assert decoded.note == "Payload is 5 bytes of binary data, not UTF-8"


def test_go_micro_event_with_fields_of_the_wrong_type_is_decoded_as_far_as_possible():
    """Payload 5, Metadata "x" and a Timestamp that is no time are each named in the note; the rest
    (ID, headers) is still decoded."""
    data = go_json({"ID": 42, "Topic": "orders", "Timestamp": "yesterday", "Metadata": "x", "Payload": 5})

    decoded = decode("orders", {"Micro-From-Service": "checkout"}, data)

    assert decoded.format == "gomicro-event"
    assert (decoded.event_id, decoded.producer) == ("42", "checkout")
    assert decoded.note == ("Metadata is a string, not an object; Timestamp 'yesterday' is not a time; "
                            "Payload is a number, not base64 text")


def test_go_micro_event_payload_that_is_not_base64_is_noted():
    """A Payload string that is not standard base64 leaves the payload empty and says so."""
    data = go_json({"ID": "1", "Topic": "orders", "Timestamp": "2026-11-27T10:00:00Z", "Metadata": {},
                    "Payload": "not base64!"})

    decoded = decode("orders", None, data)

    assert (decoded.format, decoded.payload, decoded.note) == ("gomicro-event", None, "Payload is not valid base64")
