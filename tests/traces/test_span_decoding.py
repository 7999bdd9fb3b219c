"""The span decoders: Jaeger thrift and OTLP bytes in, normalised spans or a reason out."""
import json
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer
from thriftpy2.utils import serialize

from collector.traces.jaeger import agent_thrift, decode_jaeger_agent, decode_jaeger_batch, jaeger_thrift as jt
from collector.traces.model import MAX_ITEMS, SpanDecodeError
from collector.traces.otlp import decode_otlp_json, decode_otlp_protobuf

TRACE_HIGH, TRACE_LOW = -0x1122334455667788, 0x0102030405060708
TRACE_ID = f"{TRACE_HIGH & (2**64 - 1):016x}{TRACE_LOW:016x}"


def tag(key, value):
    if isinstance(value, bool):
        return jt.Tag(key=key, vType=jt.TagType.BOOL, vBool=value)
    if isinstance(value, int):
        return jt.Tag(key=key, vType=jt.TagType.LONG, vLong=value)
    if isinstance(value, float):
        return jt.Tag(key=key, vType=jt.TagType.DOUBLE, vDouble=value)
    if isinstance(value, bytes):
        return jt.Tag(key=key, vType=jt.TagType.BINARY, vBinary=value)
    return jt.Tag(key=key, vType=jt.TagType.STRING, vStr=value)


def jaeger_span(span_id=2, parent=0, name="op", start=1_700_000_000_000_000, duration=1500, tags=(), **fields):
    return jt.Span(
        traceIdHigh=TRACE_HIGH, traceIdLow=TRACE_LOW, spanId=span_id, parentSpanId=parent,
        operationName=name, flags=1, startTime=start, duration=duration, tags=list(tags), **fields,
    )


def batch(*spans, service="shop", process_tags=None):
    return jt.Batch(process=jt.Process(serviceName=service, tags=process_tags), spans=list(spans))


def agent_datagram(jaeger_batch, factory):
    buffer = TMemoryBuffer()
    protocol = factory.get_protocol(buffer)
    protocol.write_message_begin("emitBatch", TMessageType.ONEWAY, 0)
    agent_thrift.Agent.emitBatch_args(batch=jaeger_batch).write(protocol)
    protocol.write_message_end()
    return buffer.getvalue()


def test_a_jaeger_span_from_an_opentelemetry_exporter_maps_its_tags_to_fields():
    """span.kind, otel.status_*, otel.scope.* and error become fields; resource keys move to the resource."""
    span = jaeger_span(
        span_id=-5, parent=7, name="GET /orders",
        tags=[
            tag("http.method", "GET"), tag("service.name", "shop"), tag("telemetry.sdk.language", "python"),
            tag("host.name", "box"), tag("span.kind", "server"), tag("otel.status_code", "ERROR"),
            tag("otel.status_description", "boom"), tag("otel.library.name", "lib"),
            tag("otel.scope.name", "lib"), tag("otel.scope.version", "1.0"), tag("error", True),
            tag("ratio", 0.5), tag("payload", b"\x00\x01"),
        ],
        logs=[jt.Log(timestamp=1_700_000_000_000_100, fields=[tag("k", "v"), tag("message", "retrying")])],
        references=[jt.SpanRef(refType=jt.SpanRefType.FOLLOWS_FROM, traceIdHigh=0, traceIdLow=9, spanId=10)],
    )
    result = decode_jaeger_batch(serialize(batch(span), TBinaryProtocolFactory()))

    assert result.rejected == []
    [s] = result.spans
    assert (s.trace_id, s.span_id, s.parent_span_id) == (TRACE_ID, "fffffffffffffffb", "0000000000000007")
    assert (s.service, s.operation, s.kind, s.scope) == ("shop", "GET /orders", "server", "lib")
    assert (s.status_code, s.status_message, s.error) == ("error", "boom", True)
    assert (s.start_us, s.duration_us) == (1_700_000_000_000_000, 1500)
    assert s.tags == {"http.method": "GET", "otel.scope.version": "1.0", "ratio": 0.5, "payload": "AAE="}
    assert s.resource == {"service.name": "shop", "telemetry.sdk.language": "python", "host.name": "box"}
    assert s.events == [{"time_us": 1_700_000_000_000_100, "name": "retrying", "attributes": {"k": "v"}}]
    assert s.links == [{"trace_id": f"{9:032x}", "span_id": f"{10:016x}", "attributes": {}}]
    assert s.notes == ()


def test_a_jaeger_child_of_reference_names_the_parent_when_parent_span_id_is_zero():
    """Jaeger clients that only send references still get their parent linked."""
    ref = jt.SpanRef(refType=jt.SpanRefType.CHILD_OF, traceIdHigh=TRACE_HIGH, traceIdLow=TRACE_LOW, spanId=42)
    [s] = decode_jaeger_batch(serialize(batch(jaeger_span(references=[ref])))).spans
    assert s.parent_span_id == f"{42:016x}"
    assert s.links == []


def test_an_opentracing_error_tag_alone_marks_the_span_as_an_error():
    """error=true without otel.status_code gives status error; the process tags form the resource."""
    span = jaeger_span(tags=[tag("error", "true")])
    [s] = decode_jaeger_batch(serialize(batch(span, process_tags=[tag("hostname", "h1")]))).spans
    assert (s.status_code, s.error) == ("error", True)
    assert s.resource == {"hostname": "h1", "service.name": "shop"}
    assert "error" not in s.tags


def test_a_compact_agent_datagram_decodes_like_the_binary_one():
    """The agent message envelope is read in both protocols, with the same spans out."""
    jaeger_batch = batch(jaeger_span(span_id=3), jaeger_span(span_id=4, parent=3))
    compact = decode_jaeger_agent(agent_datagram(jaeger_batch, TCompactProtocolFactory()), "compact")
    binary = decode_jaeger_agent(agent_datagram(jaeger_batch, TBinaryProtocolFactory()), "binary")
    assert compact.spans == binary.spans
    assert [(s.span_id, s.parent_span_id) for s in compact.spans] == [(f"{3:016x}", None), (f"{4:016x}", f"{3:016x}")]


def test_a_jaeger_batch_keeps_good_spans_and_reports_the_ones_with_zero_ids():
    """A zero span id rejects that span only, with a reason naming it."""
    result = decode_jaeger_batch(serialize(batch(jaeger_span(span_id=0, name="bad"), jaeger_span(span_id=5))))
    assert [s.span_id for s in result.spans] == [f"{5:016x}"]
    assert result.rejected == ["span 0 ('bad'): span id is zero"]


def test_a_jaeger_span_ending_before_it_starts_is_kept_with_zero_duration_and_a_note():
    [s] = decode_jaeger_batch(serialize(batch(jaeger_span(duration=-20)))).spans
    assert s.duration_us == 0
    assert s.notes == ("end before start: duration set to 0",)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
@pytest.mark.parametrize("data", [b"", b"\xff" * 40, b"GET / HTTP/1.1\r\n\r\n", b"\x00"])
def test_garbage_is_a_span_decode_error_for_jaeger_decoders(data, protocol):
    """Any malformed input raises SpanDecodeError with a reason, never another exception."""
    for decode in (decode_jaeger_batch, decode_jaeger_agent):
        with pytest.raises(SpanDecodeError) as caught:
            decode(data, protocol)
        assert caught.value.reason


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_a_jaeger_batch_cut_anywhere_is_a_span_decode_error(protocol):
    """Truncation is caught at every byte, never decoded as a shorter or garbled batch."""
    factory = TBinaryProtocolFactory() if protocol == "binary" else TCompactProtocolFactory()
    data = serialize(batch(jaeger_span(tags=[tag("k", "v" * 100)]), jaeger_span(span_id=9)), factory)
    for cut in range(len(data)):
        with pytest.raises(SpanDecodeError):
            decode_jaeger_batch(data[:cut], protocol)


def varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


@pytest.mark.parametrize("protocol, data", [
    # An unknown field 99 holding a list of 2**31 - 1 items of type STOP, which take no bytes.
    ("binary", b"\x0f\x00\x63" + b"\x00" + (2**31 - 1).to_bytes(4, "big") + b"\x00"),
    ("compact", b"\x09" + varint(198) + b"\xf0" + varint(2**31 - 1) + b"\x00"),
])
def test_a_huge_container_of_zero_width_items_is_refused_at_once(protocol, data):
    """Such a header would make thriftpy2 loop for seconds; it is malformed and refused before that."""
    started = time.perf_counter()
    with pytest.raises(SpanDecodeError, match="container of 2147483647 items"):
        decode_jaeger_batch(data, protocol)
    assert time.perf_counter() - started < 0.5


def test_ten_thousand_jaeger_tags_are_capped_with_a_note():
    span = jaeger_span(tags=[tag(f"k{i}", i) for i in range(10_000)])
    [s] = decode_jaeger_batch(serialize(batch(span))).spans
    assert len(s.tags) == MAX_ITEMS
    assert s.notes == (f"10000 tags truncated to {MAX_ITEMS}",)


def sdk_spans():
    """A parent and a child from the real SDK: attributes, an event, an error status and a link."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.orders", "2.0")
    with tracer.start_as_current_span("place order", kind=trace.SpanKind.SERVER) as parent:
        link = trace.Link(parent.get_span_context(), {"why": "batch"})
        with tracer.start_as_current_span("charge", kind=trace.SpanKind.CLIENT, links=[link]) as child:
            child.set_attribute("amount", 12.5)
            child.set_attribute("items", ["a", "b"])
            child.add_event("card declined", {"attempt": 2})
            child.set_status(trace.Status(trace.StatusCode.ERROR, "declined"))
    return exporter.get_finished_spans()


def test_an_otlp_protobuf_request_from_the_sdk_encoder_decodes_to_the_same_spans():
    """Ids, parent, times, kind, status, attributes, events and links all survive."""
    child, parent = sdk_spans()
    result = decode_otlp_protobuf(encode_spans([child, parent]).SerializeToString())

    assert result.rejected == []
    c, p = result.spans
    assert c.trace_id == p.trace_id == f"{child.context.trace_id:032x}"
    assert (c.span_id, c.parent_span_id) == (f"{child.context.span_id:016x}", p.span_id)
    assert p.parent_span_id is None
    assert (c.service, c.operation, c.kind, c.scope) == ("checkout", "charge", "client", "shop.orders")
    assert (c.status_code, c.status_message, c.error) == ("error", "declined", True)
    assert (c.start_us, c.duration_us) == ((child.start_time + 500) // 1000, (child.end_time - child.start_time + 500) // 1000)
    assert c.tags == {"amount": 12.5, "items": ["a", "b"], "otel.scope.version": "2.0"}
    assert c.resource["service.name"] == "checkout"
    assert c.events == [{"time_us": (child.events[0].timestamp + 500) // 1000, "name": "card declined", "attributes": {"attempt": 2}}]
    assert c.links == [{"trace_id": p.trace_id, "span_id": p.span_id, "attributes": {"why": "batch"}}]


def test_otlp_protobuf_garbage_and_truncation_are_span_decode_errors():
    data = encode_spans(list(sdk_spans())).SerializeToString()
    for bad in (b"\xff\xff\xff", data[:-3], data[: len(data) // 2]):
        with pytest.raises(SpanDecodeError, match="not an OTLP protobuf"):
            decode_otlp_protobuf(bad)


def otlp_json(*spans, resource=None):
    resource = resource if resource is not None else {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]}
    return json.dumps({
        "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "lib"}, "spans": list(spans)}]}]
    }).encode()


def json_span(**fields):
    span = {
        "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173", "name": "GET /items", "kind": 2,
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
        "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}}],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "retry", "attributes": []}],
        "status": {"code": 2, "message": "server error"},
    }
    return span | fields


def test_otlp_json_with_hex_ids_string_int64s_and_int_enums_decodes():
    """The OTLP/JSON mapping: hex ids (any case), int64 as strings, enums as numbers."""
    [s] = decode_otlp_json(otlp_json(json_span())).spans
    assert (s.trace_id, s.span_id, s.parent_span_id) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (s.service, s.operation, s.kind, s.scope) == ("api", "GET /items", "server", "lib")
    assert (s.start_us, s.duration_us) == (1544712660000000, 1_000_000)
    assert (s.status_code, s.status_message, s.error) == ("error", "server error", True)
    assert s.tags == {"http.status_code": 500}
    assert s.events == [{"time_us": 1544712660500000, "name": "retry", "attributes": {}}]


def test_otlp_json_enum_names_are_accepted_too():
    [s] = decode_otlp_json(otlp_json(json_span(kind="SPAN_KIND_CONSUMER", status={"code": "STATUS_CODE_OK"}))).spans
    assert (s.kind, s.status_code, s.error) == ("consumer", "ok", False)


def test_otlp_json_spans_with_bad_ids_are_rejected_and_the_others_kept():
    """Wrong length, all zeros or not hex: that span is rejected with a reason, the rest decode."""
    result = decode_otlp_json(otlp_json(
        json_span(name="short", traceId="abcd"),
        json_span(name="zeros", spanId="0" * 16),
        json_span(name="nothex", parentSpanId="zz" * 8),
        json_span(name="good"),
        json_span(name="badlink", links=[{"traceId": "ab" * 16, "spanId": "12"}]),
    ))
    assert [s.operation for s in result.spans] == ["good"]
    assert result.rejected == [
        "resourceSpans[0].scopeSpans[0].spans[0] ('short'): trace_id must be 16 bytes, got 2",
        "resourceSpans[0].scopeSpans[0].spans[1] ('zeros'): span_id is all zeros",
        "resourceSpans[0].scopeSpans[0].spans[2] ('nothex'): parent_span_id is not hex: 'zzzzzzzzzzzzzzzz'",
        "resourceSpans[0].scopeSpans[0].spans[4] ('badlink'): link 0 span_id must be 8 bytes, got 1",
    ]


def test_an_otlp_root_span_has_no_parent_whether_the_parent_is_empty_or_zeros():
    result = decode_otlp_json(otlp_json(json_span(parentSpanId=""), json_span(parentSpanId="0" * 16)))
    assert [s.parent_span_id for s in result.spans] == [None, None]


def test_an_otlp_span_ending_before_it_starts_is_kept_with_zero_duration_and_a_note():
    [s] = decode_otlp_json(otlp_json(json_span(endTimeUnixNano="1544712650000000000"))).spans
    assert s.duration_us == 0
    assert s.notes == ("end before start: duration set to 0",)


def test_ten_thousand_otlp_attributes_are_capped_with_a_note():
    attributes = [{"key": f"k{i}", "value": {"intValue": i}} for i in range(10_000)]
    [s] = decode_otlp_json(otlp_json(json_span(attributes=attributes))).spans
    assert len(s.tags) == MAX_ITEMS
    assert s.tags["k999"] == 999
    assert s.notes == (f"10000 tags truncated to {MAX_ITEMS}",)


def test_otlp_attribute_values_of_every_kind_become_json():
    values = [
        {"key": "s", "value": {"stringValue": "x"}}, {"key": "b", "value": {"boolValue": True}},
        {"key": "d", "value": {"doubleValue": 1.5}}, {"key": "raw", "value": {"bytesValue": "AAE="}},
        {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "two"}]}}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "inner", "value": {"boolValue": False}}]}}},
        {"key": "empty", "value": {}},
    ]
    [s] = decode_otlp_json(otlp_json(json_span(attributes=values))).spans
    assert s.tags == {"s": "x", "b": True, "d": 1.5, "raw": "AAE=", "arr": [1, "two"], "kv": {"inner": False}, "empty": None}


def test_an_otlp_resource_without_service_name_gets_unknown_service_and_a_note():
    [s] = decode_otlp_json(otlp_json(json_span(), resource={})).spans
    assert s.service == "unknown_service"
    assert s.notes == ("no service.name in the resource: unknown_service",)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b'{"resourceSpans": 3}', b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}'])
def test_malformed_otlp_json_is_a_span_decode_error(data):
    with pytest.raises(SpanDecodeError) as caught:
        decode_otlp_json(data)
    assert caught.value.reason


def test_an_empty_otlp_request_decodes_to_no_spans():
    assert decode_otlp_protobuf(ExportTraceServiceRequest().SerializeToString()).spans == []
    assert decode_otlp_json(b"{}").spans == []
