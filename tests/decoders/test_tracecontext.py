"""Trace context from W3C traceparent, Jaeger uber-trace-id and B3, in headers or in the envelope."""

import pytest

from collector.decoders import decode, parse_trace_context

from .producers import SPAN, TRACE, TRACEPARENT, gomicro_event


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
