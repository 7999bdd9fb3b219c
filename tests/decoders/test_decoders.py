"""Decoding in general: plain JSON and headers, text, raw and every kind of bad input, what jsonb can store,
and the json module fallback."""

import json
import os

import pytest

from collector.decoders import DEFAULT_RULES, FORMATS, Decoded, decode

from .producers import SPAN, TRACE, go_json, gomicro_broker, gomicro_event


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
    monkeypatch.setattr("collector.decoders.payload.orjson", None)  # where `_loads` looks it up

    assert decode("t", None, data) == with_orjson
