"""The span receivers, fed by the real OpenTelemetry exporters over loopback sockets.

Receivers run on an event loop in a background thread, as in the collector; the
exporters are synchronous and run in the test thread.
"""
import asyncio
import gzip
import json
import socket
import threading

import grpc
import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.jaeger.thrift import JaegerExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

from collector.traces.jaeger import agent_thrift, jaeger_thrift
from collector.traces.agent import start_jaeger_agent
from collector.traces.receivers import start_jaeger_http, start_otlp_grpc, start_otlp_http

HOST = "127.0.0.1"

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated method __init__:DeprecationWarning")


class Sink:
    """Collects the spans a receiver hands over; ``failing`` makes it act like a database that is down."""

    def __init__(self):
        self.spans = []
        self.failing = False
        self._changed = threading.Condition()

    async def __call__(self, spans):
        if self.failing:
            raise ConnectionError("database is down")
        with self._changed:
            self.spans.extend(spans)
            self._changed.notify_all()

    def wait_for(self, count, timeout=10):
        with self._changed:
            self._changed.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def sink():
    return Sink()


@pytest.fixture
def start(loop, sink):
    """start(start_receiver, **options) -> a running receiver on a free port, closed after the test."""
    receivers = []

    def start(start_receiver, **options):
        receiver = run(loop, start_receiver(HOST, 0, sink, **options))
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        run(loop, receiver.wait_closed())


def run(loop, coroutine, timeout=15):
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)


def settled(loop):
    """Let the loop finish the step that called the sink, so the counters are up to date."""
    run(loop, asyncio.sleep(0))


def make_trace(exporter):
    """A parent and a child exported through ``exporter``; returns the SDK's own (parent, child)."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.orders", "2.0")
    with tracer.start_as_current_span("place order", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("order.id", "o-17")
        link = trace.Link(parent.get_span_context(), {"why": "batch"})
        with tracer.start_as_current_span("charge", kind=trace.SpanKind.CLIENT, links=[link]) as child:
            child.set_attribute("amount", 12.5)
            child.add_event("card declined", {"attempt": 2})
            child.set_status(trace.Status(trace.StatusCode.ERROR, "declined"))
    provider.shutdown()
    child_span, parent_span = recorded.get_finished_spans()
    return parent_span, child_span


def micros(nanos):
    return (nanos + 500) // 1000


def assert_received(received, parent, child, link_attributes):
    """The sink holds exactly the SDK's two spans, every normalised field as the SDK made it."""
    assert sorted(s.operation for s in received) == ["charge", "place order"]
    p = next(s for s in received if s.operation == "place order")
    c = next(s for s in received if s.operation == "charge")
    trace_id = f"{parent.context.trace_id:032x}"
    assert (p.trace_id, p.span_id, p.parent_span_id) == (trace_id, f"{parent.context.span_id:016x}", None)
    assert (c.trace_id, c.span_id, c.parent_span_id) == (trace_id, f"{child.context.span_id:016x}", p.span_id)
    for span, sdk in ((p, parent), (c, child)):
        assert (span.service, span.scope) == ("checkout", "shop.orders")
        assert (span.start_us, span.duration_us) == (micros(sdk.start_time), micros(sdk.end_time - sdk.start_time))
        assert span.resource["service.name"] == "checkout"
        assert span.resource["telemetry.sdk.language"] == "python"
        assert span.notes == ()
    assert (p.kind, p.status_code, p.error, p.tags) == ("server", "unset", False, {"order.id": "o-17", "otel.scope.version": "2.0"})
    assert (c.kind, c.status_code, c.status_message, c.error) == ("client", "error", "declined", True)
    assert c.tags == {"amount": 12.5, "otel.scope.version": "2.0"}
    assert c.events == [{"time_us": micros(child.events[0].timestamp), "name": "card declined", "attributes": {"attempt": 2}}]
    assert c.links == [{"trace_id": trace_id, "span_id": p.span_id, "attributes": link_attributes}]


def test_the_jaeger_agent_receives_the_opentelemetry_jaeger_exporters_udp_datagrams(loop, start, sink):
    """Compact emitBatch datagrams from the real exporter arrive as two normalised spans."""
    receiver = start(start_jaeger_agent, protocol="compact")
    parent, child = make_trace(JaegerExporter(agent_host_name=HOST, agent_port=receiver.port))
    # Jaeger thrift has no link attributes: they are lost by the exporter.
    assert_received(sink.wait_for(2), parent, child, link_attributes={})
    settled(loop)
    assert (receiver.counters.payloads, receiver.counters.spans, receiver.counters.bad_payloads) == (2, 2, 0)


def test_the_jaeger_collector_endpoint_receives_the_opentelemetry_jaeger_exporters_http_posts(start, sink):
    receiver = start(start_jaeger_http)
    exporter = JaegerExporter(collector_endpoint=f"http://{HOST}:{receiver.port}/api/traces")
    parent, child = make_trace(exporter)
    assert_received(sink.wait_for(2), parent, child, link_attributes={})
    assert receiver.counters.spans == 2


def test_the_binary_agent_port_decodes_a_binary_emit_batch_datagram(start, sink):
    receiver = start(start_jaeger_agent, protocol="binary")
    send_datagram(receiver.port, binary_agent_datagram(span_id=77))
    [span] = sink.wait_for(1)
    assert (span.span_id, span.service, span.operation) == (f"{77:016x}", "legacy", "poll")


def binary_agent_datagram(span_id):
    span = jaeger_thrift.Span(
        traceIdHigh=0, traceIdLow=5, spanId=span_id, parentSpanId=0, operationName="poll",
        flags=1, startTime=1_700_000_000_000_000, duration=10,
    )
    batch = jaeger_thrift.Batch(process=jaeger_thrift.Process(serviceName="legacy"), spans=[span])
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocolFactory().get_protocol(buffer)
    protocol.write_message_begin("emitBatch", TMessageType.ONEWAY, 0)
    agent_thrift.Agent.emitBatch_args(batch=batch).write(protocol)
    protocol.write_message_end()
    return buffer.getvalue()


def send_datagram(port, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(data, (HOST, port))


def test_garbage_datagrams_are_counted_and_dropped_and_the_agent_keeps_serving(loop, start, sink):
    """A bad datagram costs only itself: the next good one still arrives."""
    receiver = start(start_jaeger_agent, protocol="binary")
    for garbage in (b"\xff" * 64, b"", b"hello", binary_agent_datagram(span_id=1)[:-7]):
        send_datagram(receiver.port, garbage)
    send_datagram(receiver.port, binary_agent_datagram(span_id=2))
    [span] = sink.wait_for(1)
    assert span.span_id == f"{2:016x}"
    settled(loop)
    assert (receiver.counters.payloads, receiver.counters.bad_payloads, receiver.counters.spans) == (5, 4, 1)


class ResultRecorder(SpanExporter):
    """Passes spans to a real exporter and keeps what it says: SUCCESS means it understood our answer."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.results = []

    def export(self, spans):
        self.results.append(self.exporter.export(spans))
        return self.results[-1]

    def shutdown(self):
        self.exporter.shutdown()


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_otlp_http_receives_the_otlp_http_exporters_protobuf_requests(start, sink, compression):
    receiver = start(start_otlp_http)
    exporter = ResultRecorder(HttpExporter(endpoint=f"http://{HOST}:{receiver.port}/v1/traces", compression=compression))
    parent, child = make_trace(exporter)
    assert exporter.results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    assert_received(sink.wait_for(2), parent, child, link_attributes={"why": "batch"})


def test_otlp_grpc_receives_the_otlp_grpc_exporters_requests(start, sink):
    receiver = start(start_otlp_grpc)
    exporter = ResultRecorder(GrpcExporter(endpoint=f"{HOST}:{receiver.port}", insecure=True))
    parent, child = make_trace(exporter)
    assert exporter.results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    assert_received(sink.wait_for(2), parent, child, link_attributes={"why": "batch"})
    assert receiver.counters.spans == 2


def url(receiver, path):
    return f"http://{HOST}:{receiver.port}{path}"


def test_jaeger_http_answers_400_with_a_reason_for_garbage_and_truncated_bodies(start, sink):
    receiver = start(start_jaeger_http)
    headers = {"Content-Type": "application/x-thrift"}
    garbage = requests.post(url(receiver, "/api/traces"), data=b"\xff" * 32, headers=headers, timeout=10)
    assert (garbage.status_code, garbage.text) == (400, "not a Jaeger Batch in thrift binary: unknown thrift type 255")
    whole = thrift_batch_body()
    cut = requests.post(url(receiver, "/api/traces"), data=whole[:-5], headers=headers, timeout=10)
    assert cut.status_code == 400
    assert "truncated" in cut.text
    assert requests.post(url(receiver, "/api/traces"), data=whole, headers=headers, timeout=10).status_code == 202
    assert receiver.counters.bad_payloads == 2
    assert len(sink.spans) == 1


def thrift_batch_body():
    buffer = TMemoryBuffer()
    span = jaeger_thrift.Span(
        traceIdHigh=1, traceIdLow=2, spanId=3, parentSpanId=0, operationName="op", flags=1, startTime=1, duration=1,
    )
    jaeger_thrift.Batch(process=jaeger_thrift.Process(serviceName="svc"), spans=[span]).write(
        TBinaryProtocolFactory().get_protocol(buffer)
    )
    return buffer.getvalue()


def test_http_receivers_refuse_bodies_over_max_body_with_413(start, sink):
    """Declared too large, streamed too large, or too large once gunzipped: all 413, nothing read into the sink."""
    jaeger = start(start_jaeger_http, max_body=1000)
    otlp = start(start_otlp_http, max_body=1000)
    thrift = {"Content-Type": "application/x-thrift"}
    declared = requests.post(url(jaeger, "/api/traces"), data=b"\x00" * 1001, headers=thrift, timeout=10)
    streamed = requests.post(url(jaeger, "/api/traces"), data=iter([b"\x00" * 600] * 2), headers=thrift, timeout=10)
    gunzipped = requests.post(
        url(otlp, "/v1/traces"), data=gzip.compress(b"\x00" * 100_000), timeout=10,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert [declared.status_code, streamed.status_code, gunzipped.status_code] == [413, 413, 413]
    assert sink.spans == []


def test_http_receivers_answer_404_for_other_paths_405_for_other_methods_and_415_for_other_types(start):
    jaeger = start(start_jaeger_http)
    otlp = start(start_otlp_http)
    assert requests.post(url(jaeger, "/v1/traces"), data=b"", timeout=10).status_code == 404
    assert requests.get(url(otlp, "/v1/traces"), timeout=10).status_code == 405
    refused = requests.post(url(otlp, "/v1/traces"), data=b"{}", headers={"Content-Type": "text/plain"}, timeout=10)
    assert refused.status_code == 415
    assert "application/x-protobuf or application/json" in refused.text


def otlp_json_body(*spans):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"scope": {"name": "lib"}, "spans": list(spans)}],
    }]}).encode()


def json_span(name, trace_id="5b8efff798038103d269b633813fc60c", span_id="eee19b7ec3c1b174"):
    return {
        "traceId": trace_id, "spanId": span_id, "name": name, "kind": 2,
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
    }


def test_otlp_http_json_keeps_good_spans_and_reports_the_rejected_ones_as_partial_success(start, sink):
    receiver = start(start_otlp_http)
    body = otlp_json_body(json_span("good"), json_span("short id", span_id="eee1"))
    response = requests.post(url(receiver, "/v1/traces"), data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "span_id must be 8 bytes, got 2" in partial["errorMessage"]
    assert [s.operation for s in sink.spans] == ["good"]
    assert receiver.counters.rejected_spans == 1


def test_otlp_http_answers_400_with_a_status_naming_the_reason_for_malformed_bodies(start):
    receiver = start(start_otlp_http)
    as_json = requests.post(url(receiver, "/v1/traces"), data=b"{nope", headers={"Content-Type": "application/json"}, timeout=10)
    assert as_json.status_code == 400
    assert as_json.json()["message"].startswith("not JSON")
    as_protobuf = requests.post(url(receiver, "/v1/traces"), data=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert as_protobuf.status_code == 400
    assert b"not an OTLP protobuf ExportTraceServiceRequest" in as_protobuf.content


def test_a_failing_sink_makes_http_answer_503_so_exporters_retry(start, sink):
    sink.failing = True
    jaeger = start(start_jaeger_http)
    otlp = start(start_otlp_http)
    thrift = requests.post(url(jaeger, "/api/traces"), data=thrift_batch_body(), headers={"Content-Type": "application/x-thrift"}, timeout=10)
    otlp_json = requests.post(url(otlp, "/v1/traces"), data=otlp_json_body(json_span("x")), headers={"Content-Type": "application/json"}, timeout=10)
    assert [thrift.status_code, otlp_json.status_code] == [503, 503]
    assert jaeger.counters.sink_failures == otlp.counters.sink_failures == 1


def test_a_failing_sink_makes_grpc_answer_unavailable(start, sink):
    sink.failing = True
    receiver = start(start_otlp_grpc)
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "x"
    with grpc.insecure_channel(f"{HOST}:{receiver.port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert receiver.counters.sink_failures == 1
