"""Properties of the decoders over generated input: nothing raises, payloads always fit jsonb, and what
a producer encodes decodes back to the same values."""

import base64
import json
import math
import re
from datetime import timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decoders import DEFAULT_RULES, FORMATS, Decoded, decode, parse_trace_context

RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200)
HEX = re.compile(r"[0-9a-f]+")
SUFFIX = re.compile(DEFAULT_RULES.type_version_suffix)
# Keys that make a JSON object one of the envelope formats.
ENVELOPE_KEYS = ["ID", "Topic", "Timestamp", "Metadata", "Payload", "Header", "Body", "type", "version",
                 "timestamp", "time", "body", "id", "source", "producer", "key", "metadata", "specversion",
                 "data", "data_base64", "datacontenttype", "dataschema", "traceparent"]

any_text = st.text(max_size=40)  # NUL, lone surrogates and control characters included
safe_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
label = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40) \
    .map(str.strip).filter(bool)
int64 = st.integers(-(2**63), 2**63 - 1)  # orjson reads wider integers as floats


def json_values(text, floats, keys=None):
    keys = text if keys is None else keys
    scalars = st.none() | st.booleans() | int64 | floats | text
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=20,
    )


any_json = json_values(any_text, st.floats())
plain_keys = safe_text.filter(lambda key: key not in ENVELOPE_KEYS)
safe_json = json_values(safe_text, st.floats(allow_nan=False, allow_infinity=False), plain_keys)
headers = st.dictionaries(
    st.sampled_from(["type", "Event-Type", "version", "producer", "key", "Nats-Msg-Id", "traceparent", "b3",
                     "uber-trace-id", "ce-specversion", "ce-type", "content-type", "schema"]) | any_text,
    any_text, max_size=6,
)


def jsonb_safe(value, max_depth=DEFAULT_RULES.max_depth):
    """Independent check of what PostgreSQL jsonb accepts; see test_decoders.assert_jsonb_safe."""
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    if json.loads(encoded) != value:
        return False
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            return False
        if isinstance(item, (dict, list)):
            if depth >= max_depth or (isinstance(item, dict) and any("\x00" in k for k in item)):
                return False
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return True


def assert_well_formed(decoded: Decoded):
    """Invariants of every Decoded, whatever came in."""
    assert decoded.format in FORMATS
    assert decoded.note is None or not decoded.note.startswith("decoder failed"), decoded.note
    assert decoded.payload is None or jsonb_safe(decoded.payload), decoded.payload
    for value in (decoded.event_id, decoded.type, decoded.version, decoded.producer, decoded.key, decoded.note):
        if value is not None:
            assert value and not re.search("[\x00-\x1f\x7f-\x9f\ud800-\udfff]", value)
            value.encode("utf-8")
    for value in (decoded.event_id, decoded.type, decoded.version, decoded.producer, decoded.key):
        assert value is None or len(value) <= DEFAULT_RULES.max_label_length
    assert decoded.trace_id is None or (len(decoded.trace_id) == 32 and HEX.fullmatch(decoded.trace_id))
    assert decoded.span_id is None or (len(decoded.span_id) == 16 and HEX.fullmatch(decoded.span_id))
    assert decoded.time is None or decoded.time.tzinfo is timezone.utc


@RELAXED
@given(data=st.binary(max_size=2000), headers=headers | st.none())
def test_decode_never_raises_for_arbitrary_bytes_and_headers(data, headers):
    """Any bytes with any headers decode to a well-formed Decoded."""
    assert_well_formed(decode("subject", headers, data))


@RELAXED
@given(doc=st.dictionaries(st.sampled_from(ENVELOPE_KEYS), any_json | st.binary().map(
    lambda raw: base64.b64encode(raw).decode()), max_size=8), headers=headers)
def test_decode_never_raises_for_json_shaped_like_envelopes_with_fields_of_any_type(doc, headers):
    """Objects with envelope field names holding anything (wrong types, NaN, NUL, base64 of noise)."""
    assert_well_formed(decode("subject", headers, json.dumps(doc).encode()))


@RELAXED
@given(value=any_json.filter(lambda v: not isinstance(v, dict) or not set(v) & set(ENVELOPE_KEYS)))
def test_any_json_value_decodes_to_itself_or_to_no_payload_with_a_note(value):
    """A JSON value jsonb can hold comes back equal; one it cannot hold (NUL, lone surrogate, NaN,
    Infinity) gives no payload and a note."""
    decoded = decode("subject", None, json.dumps(value).encode())

    assert decoded.format == "json"
    if jsonb_safe(value):
        assert decoded.payload == value
        assert decoded.note is None
    else:
        assert decoded.payload is None
        assert decoded.note.startswith("payload not stored: it holds")


type_names = label.filter(lambda t: not SUFFIX.match(t))
versions = st.integers(0, 10**9).map(lambda n: (n, str(n))) \
    | st.from_regex(r"[vV]?[0-9]{1,6}", fullmatch=True).map(lambda v: (v, v.lstrip("vV")))
bodies = safe_json.filter(lambda v: not isinstance(v, str))  # a string body is read as encoded bytes
timestamps = st.datetimes(timezones=st.just(timezone.utc), allow_imaginary=False)


@RELAXED
@given(type_=type_names, version=versions, body=bodies, stamp=timestamps)
def test_envelope_round_trips_type_version_time_and_body(type_, version, body, stamp):
    """An envelope built from any type, version, time and body decodes back to the same values."""
    raw_version, expected_version = version
    data = json.dumps({"type": type_, "version": raw_version, "timestamp": stamp.isoformat(), "body": body})

    decoded = decode("subject", None, data.encode())

    assert (decoded.format, decoded.type, decoded.version) == ("envelope", type_, expected_version)
    assert decoded.payload == body
    assert decoded.time == (None if stamp.year == 1 and stamp.month == 1 and stamp.day == 1 else stamp)
    assert decoded.note is None


@RELAXED
@given(event_id=label, producer=label, payload=safe_json, stamp=timestamps)
def test_go_micro_event_round_trips_id_producer_time_and_payload(event_id, producer, payload, stamp):
    """A Go Micro event with any id, producer metadata and JSON payload decodes back to them."""
    data = json.dumps({
        "ID": event_id, "Topic": "orders", "Timestamp": stamp.isoformat().replace("+00:00", "Z"),
        "Metadata": {"Micro-From-Service": producer},
        "Payload": base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode(),
    }).encode()

    decoded = decode("orders", None, data)

    assert (decoded.format, decoded.event_id, decoded.producer) == ("gomicro-event", event_id, producer)
    assert decoded.payload == payload
    assert decoded.note is None


@RELAXED
@given(event_id=label, source=label, type_=type_names, data=safe_json)
def test_structured_cloudevent_round_trips_its_attributes_and_data(event_id, source, type_, data):
    event = {"specversion": "1.0", "id": event_id, "source": source, "type": type_, "data": data}

    decoded = decode("orders", None, json.dumps(event).encode())

    assert (decoded.format, decoded.event_id, decoded.producer, decoded.type) == \
        ("cloudevents", event_id, source, type_)
    assert decoded.payload == data
    assert decoded.note is None


@RELAXED
@given(trace=st.integers(1, 2**128 - 1), span=st.integers(1, 2**64 - 1))
def test_every_trace_header_format_carries_the_same_ids(trace, span):
    """traceparent, uber-trace-id (without leading zeros), b3 and X-B3-* all read back the same ids."""
    trace_hex, span_hex = f"{trace:032x}", f"{span:016x}"
    expected = (trace_hex, span_hex)

    assert parse_trace_context({"traceparent": f"00-{trace_hex}-{span_hex}-01"}) == expected
    assert parse_trace_context({"uber-trace-id": f"{trace:x}:{span:x}:0:1"}) == expected
    assert parse_trace_context({"b3": f"{trace_hex}-{span_hex}-1"}) == expected
    assert parse_trace_context({"X-B3-TraceId": trace_hex, "X-B3-SpanId": span_hex}) == expected


@RELAXED
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_are_read_exactly(value):
    """The fast parser reads every finite float to the same double Python writes."""
    decoded = decode("subject", None, json.dumps([value]).encode())

    assert decoded.payload == [value]
    assert math.copysign(1, decoded.payload[0]) == math.copysign(1, value)
