"""Go Micro broker messages: headers give the labels, Body is base64 of the user's bytes."""

from collector.decoders import decode

from .producers import SPAN, TRACE, TRACEPARENT, go_json, gomicro_broker


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
