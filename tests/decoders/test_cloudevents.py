"""CloudEvents 1.0 in structured mode (one JSON object) and binary mode (attributes in headers)."""

import base64
from datetime import datetime, timezone

import pytest

from collector.decoders import Decoded, decode

from .producers import SPAN, TRACE, TRACEPARENT, go_json


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
