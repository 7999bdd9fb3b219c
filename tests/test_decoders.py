"""Wire-format decoders: every format as its real producer writes it, and every kind of bad input."""

import base64
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from collector import decoders
from collector.decoders import DEFAULT_RULES, FORMATS, Decoded, Rules, decode, parse_trace_context

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


def assert_jsonb_safe(payload, max_depth=DEFAULT_RULES.max_depth):
    """What PostgreSQL jsonb accepts: UTF-8 JSON (no NaN, Infinity or unpaired surrogate) that reads back
    equal, with no NUL character in any string or key, nested at most max_depth deep."""
    encoded = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert json.loads(encoded) == payload
    stack = [(payload, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            assert "\x00" not in value
        elif isinstance(value, (dict, list)):
            assert depth < max_depth
            if isinstance(value, dict):
                assert not any("\x00" in key for key in value)
                value = value.values()
            stack.extend((item, depth + 1) for item in value)


# --- Go Micro events -----------------------------------------------------------------------------------------


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


# --- Go Micro broker messages --------------------------------------------------------------------------------


def test_go_micro_broker_message_gives_id_producer_trace_and_body():
    """broker.Message headers carry Micro-Id, the sending service and the trace; Body is base64 JSON."""
    header = {"Micro-Topic": "orders", "Micro-Id": "m-1", "Content-Type": "application/json",
              "Micro-From-Service": "checkout", "Traceparent": TRACEPARENT}

    decoded = decode("orders", None, gomicro_broker(go_json({"sku": "a"}), header))

    assert (decoded.format, decoded.event_id, decoded.producer) == ("gomicro-broker", "m-1", "checkout")
    assert (decoded.trace_id, decoded.span_id) == (TRACE, SPAN)
    assert decoded.payload == {"sku": "a"}
    assert decoded.note is None


def test_go_micro_broker_protobuf_body_is_left_undecoded_with_its_content_type():
    """A body whose Content-Type says protobuf is not guessed at."""
    header = {"Micro-Topic": "orders", "Content-Type": "application/protobuf"}

    decoded = decode("orders", None, gomicro_broker(b"\x0a\x03abc", header))

    assert decoded.payload is None
    assert decoded.note == "Body is application/protobuf (5 bytes), not decoded"


# --- versioned envelope --------------------------------------------------------------------------------------


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


# --- CloudEvents ---------------------------------------------------------------------------------------------


def test_structured_cloudevent_gives_id_type_source_time_trace_and_version_from_dataschema():
    """specversion/id/source/type/time/dataschema/traceparent map onto the decoded fields; data is the payload."""
    data = go_json({
        "specversion": "1.0", "id": "ce-1", "source": "/checkout", "type": "com.shop.order.created",
        "time": "2026-11-27T10:00:00.25Z", "datacontenttype": "application/json",
        "dataschema": "https://schemas.shop.test/order/v4.json", "traceparent": TRACEPARENT,
        "partitionkey": "o-1", "data": {"order_id": "o-1"},
    })

    decoded = decode("orders", None, data)

    assert decoded == Decoded(
        format="cloudevents", event_id="ce-1", type="com.shop.order.created", version="4", producer="/checkout",
        key="o-1", trace_id=TRACE, span_id=SPAN, time=datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=timezone.utc),
        payload={"order_id": "o-1"}, note=None,
    )


def test_structured_cloudevent_with_data_base64_and_a_version_extension():
    """data_base64 is decoded and parsed; an extension attribute named like a version header gives the version."""
    data = go_json({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "eventversion": "5",
                    "data_base64": base64.b64encode(b'{"a":1}').decode()})

    decoded = decode("orders", None, data)

    assert (decoded.version, decoded.payload, decoded.note) == ("5", {"a": 1}, None)


def test_structured_cloudevent_with_both_data_fields_uses_data_and_says_so():
    """data and data_base64 together break the spec; data wins and the note says so."""
    data = go_json({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": [1],
                    "data_base64": "Wzld"})

    decoded = decode("orders", None, data)

    assert decoded.payload == [1]
    assert decoded.note == "both data and data_base64; data used"


@pytest.mark.parametrize("prefix", ["ce-", "ce_", "cloudEvents:", "cloudEvents_"])
def test_binary_cloudevent_reads_attributes_from_headers_and_data_from_the_body(prefix):
    """Binary mode (ce- for NATS/HTTP, ce_ for Kafka, cloudEvents: for AMQP): attributes in headers, body is data."""
    headers = {f"{prefix}specversion": "1.0", f"{prefix}id": "b-1", f"{prefix}source": "/checkout",
               f"{prefix}type": "order.created.v2", f"{prefix}time": "2026-11-27T10:00:00Z",
               "content-type": "application/json", "traceparent": TRACEPARENT}

    decoded = decode("orders", headers, b'{"order_id":"o-1"}')

    assert (decoded.format, decoded.event_id, decoded.type, decoded.version) == \
        ("cloudevents-binary", "b-1", "order.created", "2")
    assert (decoded.producer, decoded.trace_id, decoded.payload) == ("/checkout", TRACE, {"order_id": "o-1"})
    assert decoded.time == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert decoded.note is None


def test_binary_cloudevent_without_data_is_a_complete_event():
    """An empty body is a CloudEvent without data, not an empty message."""
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "ping"}

    decoded = decode("orders", headers, b"")

    assert (decoded.format, decoded.type, decoded.payload, decoded.note) == ("cloudevents-binary", "ping", None, None)


def test_binary_cloudevent_percent_encoded_header_values_are_decoded():
    """The HTTP binding percent-encodes characters headers cannot carry."""
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/caf%C3%A9", "ce-type": "t"}

    assert decode("orders", headers, b"{}").producer == "/café"


# --- plain JSON and headers ----------------------------------------------------------------------------------


def test_plain_json_takes_labels_from_headers_whatever_their_case():
    """Header names match case-insensitively; the JSON value is the payload."""
    headers = {"EVENT-TYPE": "order.created", "x-event-version": "v7", "Producer": "checkout",
               "Message-Key": "o-1", "Nats-Msg-Id": "dedup-1", "X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN}

    decoded = decode("orders", headers, b'[1, 2, {"a": null}]')

    assert decoded == Decoded(
        format="json", event_id="dedup-1", type="order.created", version="7", producer="checkout", key="o-1",
        trace_id=TRACE, span_id=SPAN, time=None, payload=[1, 2, {"a": None}], note=None,
    )


def test_plain_json_object_gives_type_and_version_from_its_fields_and_schema_header():
    """Payload fields give the type; a schema URL header gives the version when nothing else does."""
    headers = {"schema": "https://schemas.shop.test/orders/created/v9"}

    decoded = decode("orders", headers, b'{"type": "order.created", "order_id": "o-1"}')

    assert (decoded.format, decoded.type, decoded.version) == ("json", "order.created", "9")


def test_utf8_byte_order_mark_before_json_is_ignored():
    """Some Windows tools write a BOM; the JSON after it still decodes."""
    assert decode("t", None, b'\xef\xbb\xbf{"a": 1}').payload == {"a": 1}


# --- text, raw and bad input ---------------------------------------------------------------------------------


def test_text_that_is_not_json_is_text_with_the_parse_error():
    """UTF-8 text is format text, no payload (the raw bytes are the message), and the note says why."""
    decoded = decode("logs", {"type": "log.line"}, b"hello world")

    assert (decoded.format, decoded.payload, decoded.type) == ("text", None, "log.line")
    assert decoded.note.startswith("not JSON: ")


def test_bytes_that_are_not_utf8_are_raw_with_a_note():
    decoded = decode("bin", None, b"\x00\x01\xff\xfe binary")

    assert (decoded.format, decoded.payload) == ("raw", None)
    assert decoded.note == "not UTF-8 text (invalid start byte at byte 2)"


def test_empty_message_is_raw_with_a_note():
    assert decode("t", {}, b"") == Decoded("raw", None, None, None, None, None, None, None, None, None,
                                           "empty message")


def test_data_given_as_bytearray_memoryview_or_none_is_accepted():
    """Adapters hand over whatever their client gives; none of it raises."""
    assert decode("t", None, bytearray(b"[1]")).payload == [1]
    assert decode("t", None, memoryview(b"[2]")).payload == [2]
    assert decode("t", None, None).note == "empty message"


def test_header_values_with_control_characters_are_cleaned_and_noted():
    """Control characters (NUL included, which PostgreSQL text refuses) become U+FFFD in labels."""
    decoded = decode("t", {"type": "order\x00created\x1b[31m", "key": "k\r\n"}, b"{}")

    assert decoded.type == "order\ufffdcreated\ufffd[31m"
    assert decoded.key == "k"  # surrounding whitespace is trimmed
    assert decoded.note == "type (type) had control characters (replaced by U+FFFD)"


def test_very_long_labels_are_cut():
    decoded = decode("t", {"type": "x" * 5000}, b"{}")

    assert len(decoded.type) == DEFAULT_RULES.max_label_length
    assert "cut to 256 characters" in decoded.note


def test_one_megabyte_messages_of_json_text_and_noise_all_decode():
    """1 MB of JSON is a payload; 1 MB of text is text; 1 MB of random bytes is raw. None raises."""
    big = {"items": ["x" * 100] * 10_000}
    assert decode("t", None, json.dumps(big).encode()).payload == big
    assert decode("t", None, b"a" * 1_000_000).format == "text"
    assert decode("t", None, os.urandom(1_000_000) + b"\xff").format == "raw"


def test_json_nested_ten_thousand_deep_is_text_with_a_note():
    """Python's parser gives up (RecursionError); the message is kept as text, never raised."""
    decoded = decode("t", None, b"[" * 10_000 + b"]" * 10_000)

    assert (decoded.format, decoded.payload, decoded.note) == ("text", None, "JSON nested too deep to parse")


@pytest.mark.parametrize("depth", [300, 1500])
def test_json_deeper_than_max_depth_is_not_stored_as_payload(depth):
    """Nesting past rules.max_depth (256) is parsed where possible but not stored; the note gives the limit."""
    decoded = decode("t", None, b'{"a":' * depth + b"1" + b"}" * depth)

    assert decoded.payload is None
    if decoded.format == "json":
        assert decoded.note == "payload not stored: it nested deeper than 256 levels"
    else:
        assert decoded.note == "JSON nested too deep to parse"


def test_json_exactly_max_depth_deep_is_stored():
    assert decode("t", None, b"[" * 256 + b"]" * 256).payload is not None


def test_max_depth_applies_to_payloads_inside_envelopes_too():
    """A Go Micro Payload nested too deep is left out; the envelope itself still decodes."""
    decoded = decode("orders", None, gomicro_event(b"[" * 300 + b"]" * 300))

    assert (decoded.format, decoded.payload) == ("gomicro-event", None)
    assert decoded.note == "Payload not stored: it nested deeper than 256 levels"


@pytest.mark.parametrize("data, problem", [
    (b'{"note": "nul \\u0000 here"}', "holds the NUL character (\\u0000), which jsonb cannot store"),
    (b'{"bad\\u0000key": 1}', "holds the NUL character (\\u0000), which jsonb cannot store"),
    (b'["lone \\ud800 surrogate"]', "holds an unpaired surrogate, which is not valid Unicode"),
    (b'{"x": NaN}', "holds NaN or Infinity, which jsonb cannot store"),
    (b'[-Infinity]', "holds NaN or Infinity, which jsonb cannot store"),
    (b'{"huge": 1e400}', "holds NaN or Infinity, which jsonb cannot store"),
], ids=["nul", "nul-in-key", "surrogate", "nan", "infinity", "overflow"])
def test_json_that_jsonb_cannot_store_is_decoded_without_payload(data, problem):
    """The value is recognised as JSON but not stored; the note names what jsonb would refuse."""
    decoded = decode("t", None, data)

    assert (decoded.format, decoded.payload) == ("json", None)
    assert decoded.note == f"payload not stored: it {problem}"


def test_escaped_surrogate_pairs_and_escaped_backslashes_are_fine():
    """A properly paired surrogate escape is an emoji; an escaped backslash before u0000 is no NUL."""
    decoded = decode("t", None, b'["\\ud83d\\ude00", "\\\\u0000"]')

    assert decoded.payload == ["\U0001F600", "\\u0000"]
    assert decoded.note is None
    assert_jsonb_safe(decoded.payload)


def test_nul_inside_a_go_micro_payload_keeps_the_envelope_fields():
    decoded = decode("orders", None, gomicro_event(b'{"a": "\\u0000"}', metadata={"version": "2"}))

    assert (decoded.format, decoded.version, decoded.payload) == ("gomicro-event", "2", None)
    assert "NUL" in decoded.note


def test_payload_returned_round_trips_through_utf8_json_without_nul():
    """Every payload these decoders return can be written as UTF-8 JSON text holding no \\u0000."""
    samples = [
        b'{"a": "caf\xc3\xa9", "b": [1, 2.5, true, null], "c": "\\ud83d\\ude00"}',
        gomicro_event(b'{"x": "\\u0000"}'),
        gomicro_event("plain text ✓".encode()),
        go_json({"type": "t", "version": 1, "body": "\u0000"}),
        go_json({"type": "t", "version": 1, "body": json.dumps({"k": "\ud800"})}),
        b'"just a string"',
    ]
    for data in samples:
        assert_jsonb_safe(decode("t", None, data).payload)


def test_integers_beyond_64_bits_keep_their_magnitude():
    """orjson reads integers past 64 bits as floats: the value stays close, the raw bytes stay exact."""
    payload = decode("t", None, b"[123456789012345678901234567890]").payload

    assert payload[0] == pytest.approx(123456789012345678901234567890)


# --- trace context -------------------------------------------------------------------------------------------


def test_w3c_traceparent_is_read_and_lowercased():
    assert parse_trace_context({"TraceParent": TRACEPARENT.upper()}) == (TRACE, SPAN)


@pytest.mark.parametrize("value", [
    f"ff-{TRACE}-{SPAN}-01",  # forbidden version
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
    f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
    f"00-{TRACE[:-1]}g-{SPAN}-01",  # not hex
    "garbage",
])
def test_invalid_traceparent_gives_no_ids(value):
    assert parse_trace_context({"traceparent": value}) == (None, None)


def test_jaeger_uber_trace_id_short_ids_are_left_padded():
    """Jaeger drops leading zeros; ids come back at full width. URL-encoded colons are understood."""
    assert parse_trace_context({"uber-trace-id": "abc:def:0:1"}) == ("0" * 29 + "abc", "0" * 13 + "def")
    assert parse_trace_context({"Uber-Trace-Id": f"{TRACE}%3A{SPAN}%3A0%3A1"}) == (TRACE, SPAN)


def test_b3_single_header_with_64_bit_trace_id_and_sampling_only_values():
    assert parse_trace_context({"b3": f"{TRACE[16:]}-{SPAN}-1"}) == ("0" * 16 + TRACE[16:], SPAN)
    assert parse_trace_context({"b3": f"{TRACE}-{SPAN}-1-{SPAN}"}) == (TRACE, SPAN)
    assert parse_trace_context({"b3": "1"}) == (None, None)


def test_b3_multi_headers_are_read():
    assert parse_trace_context({"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "1"}) == (TRACE, SPAN)


def test_traceparent_wins_over_other_trace_headers():
    headers = {"b3": f"{'1' * 32}-{'2' * 16}", "uber-trace-id": "3:4:0:1", "traceparent": TRACEPARENT}

    assert parse_trace_context(headers) == (TRACE, SPAN)


def test_trace_context_in_the_envelope_wins_over_the_message_headers():
    """Go Micro metadata is the producer's own context; a relay's headers come second."""
    data = gomicro_event(b"{}", metadata={"traceparent": TRACEPARENT})

    decoded = decode("orders", {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}, data)

    assert (decoded.trace_id, decoded.span_id) == (TRACE, SPAN)


def test_no_headers_means_no_trace_context():
    assert parse_trace_context(None) == (None, None)
    assert parse_trace_context({"traceparent": 5}) == (None, None)


# --- rules ---------------------------------------------------------------------------------------------------


def test_rules_name_custom_headers_and_payload_paths():
    """Operators can point the rules at their own headers and at nested payload fields."""
    rules = Rules(type_headers=["X-Kind"], payload_version_fields=("meta.rev",), producer_headers=("origin",))

    decoded = decode("t", {"x-kind": "invoice.paid", "ORIGIN": "billing"}, b'{"meta": {"rev": 4}}', rules)

    assert (decoded.type, decoded.version, decoded.producer) == ("invoice.paid", "4", "billing")
    assert rules.type_headers == ("X-Kind",)
    assert hash(rules) == hash(Rules(type_headers=("X-Kind",), payload_version_fields=("meta.rev",),
                                     producer_headers=("origin",)))


def test_type_from_subject_rule_names_untyped_messages_after_their_subject():
    rules = Rules(type_from_subject=True)

    decoded = decode("orders.created.v2", None, b"{}", rules)

    assert (decoded.type, decoded.version) == ("orders.created", "2")
    assert decode("orders.created.v2", None, b"{}").type is None


@pytest.mark.parametrize("kwargs, message", [
    ({"type_version_suffix": "(unclosed"}, "type_version_suffix is not a valid regular expression"),
    ({"schema_version": r"/v(\d+)"}, "schema_version must have a named group"),
    ({"max_depth": 0}, "max_depth must be a positive integer"),
    ({"type_headers": "type"}, "type_headers must be a list of header names"),
])
def test_invalid_rules_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Rules(**kwargs)


def test_every_decoded_format_is_a_known_one():
    samples = [gomicro_event(b"{}"), gomicro_broker(b"{}", {}), go_json({"type": "t", "body": 1}),
               go_json({"specversion": "1.0"}), b"1", b"x", b"\xff", b""]
    formats = {decode("t", None, data).format for data in samples}
    formats.add(decode("t", {"ce-specversion": "1.0"}, b"").format)

    assert formats == set(FORMATS)


@pytest.mark.parametrize("data", [
    gomicro_event(go_json({"a": [1, 2.5, "é"]}), metadata={"version": "2"}),
    b'{"x": "\\u0000"}', b'["\\ud800"]', b"[NaN]", b"[1e400]", b"[" * 300 + b"]" * 300,
    b"[" * 2000 + b"]" * 2000, b"not json", b"\xff", b'\xef\xbb\xbf{"a": 1}',
    go_json({"type": "t", "version": 1, "body": json.dumps({"k": 1})}),
], ids=["gomicro", "nul", "surrogate", "nan", "overflow", "deep", "deeper", "text", "raw", "bom", "envelope"])
def test_the_json_module_fallback_decodes_like_orjson(monkeypatch, data):
    """Without orjson installed the standard library parser gives the same Decoded."""
    with_orjson = decode("t", None, data)
    monkeypatch.setattr(decoders, "orjson", None)

    assert decode("t", None, data) == with_orjson
