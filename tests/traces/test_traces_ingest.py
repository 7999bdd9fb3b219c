"""Spans sent by the real exporters to the collector's receivers end up in PostgreSQL:
stored once, summarised per trace, rolled up per minute; bad input costs only itself."""
import asyncio
import socket
import time

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.jaeger.thrift import JaegerExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

from collector.traces.jaeger import agent_thrift, jaeger_thrift
from tests.conftest import RunningCollector, wait_until

HOST = "127.0.0.1"

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated method __init__:DeprecationWarning")


class SpanCollector(RunningCollector):
    """A collector with the span receivers installed, on free ports, in a thread of its own."""

    def __init__(self, receivers=5):
        from collector.traces import service as tracing

        super().__init__(installs=[tracing.install])
        wait_until(lambda: len(self.collector.span_receivers) == receivers, 20, "the span receivers to listen")
        self.ports = {r.name: r.port for r in self.collector.span_receivers}
        self.receivers = {r.name: r for r in self.collector.span_receivers}

    @property
    def agent_port(self):
        return self.ports["Jaeger agent UDP (compact)"]

    @property
    def binary_port(self):
        return self.ports["Jaeger agent UDP (binary)"]

    @property
    def jaeger_http(self):
        return f"http://{HOST}:{self.ports['Jaeger HTTP']}/api/traces"

    @property
    def otlp_http(self):
        return f"http://{HOST}:{self.ports['OTLP/HTTP']}/v1/traces"

    @property
    def otlp_grpc(self):
        return f"{HOST}:{self.ports['OTLP/GRPC'.replace('GRPC', 'gRPC')]}"



@pytest.fixture
def span_collector(transactional_db, settings):
    for name in ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT"):
        setattr(settings, name, 0)
    settings.EVENTSCOPE_SPANS_HOST = HOST
    running = SpanCollector()
    yield running
    running.stop()


def export_trace(exporter, service="checkout", root="place order", child_error=True, attributes=None):
    """A parent and a child exported through `exporter`; returns the SDK's (parent, child)."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.orders", "2.0")
    with tracer.start_as_current_span(root, kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("order.id", "o-17")
        for key, value in (attributes or {}).items():
            parent.set_attribute(key, value)
        with tracer.start_as_current_span("charge", kind=trace.SpanKind.PRODUCER) as child:
            child.set_attribute("messaging.message.id", "msg-1")
            child.set_attribute("messaging.destination.name", "payments")
            child.add_event("card declined", {"attempt": 2})
            if child_error:
                child.set_status(trace.Status(trace.StatusCode.ERROR, "declined"))
    provider.shutdown()
    child_span, parent_span = recorded.get_finished_spans()
    return parent_span, child_span


def hex_trace(sdk_span):
    return f"{sdk_span.context.trace_id:032x}"


def stored_spans(trace_id, count, timeout=15):
    from collector.models import Span

    return wait_until(lambda: (rows := list(Span.objects.filter(trace_id=trace_id).order_by("start"))) and
                      len(rows) >= count and rows, timeout, f"{count} spans of {trace_id}")


def assert_stored_trace(parent, child):
    """Both spans and their trace summary are in the store, as the SDK made them."""
    from collector.models import TraceSummary

    trace_id = hex_trace(parent)
    root, charge = stored_spans(trace_id, 2)
    assert (root.span_id, root.parent_span_id, root.service, root.operation) == (
        f"{parent.context.span_id:016x}", None, "checkout", "place order")
    assert (charge.parent_span_id, charge.error, charge.message_id, charge.destination) == (
        root.span_id, True, "msg-1", "payments")
    assert charge.events[0]["name"] == "card declined"
    assert charge.duration_us == (child.end_time - child.start_time + 500) // 1000
    # The writer sends start as microseconds since 2000-01-01 (binary COPY): the stored time is the SDK's.
    assert charge.start.timestamp() * 1_000_000 == pytest.approx((child.start_time + 500) // 1000, abs=1)
    assert (charge.resource["service.name"], root.resource["service.name"]) == ("checkout", "checkout")
    summary = TraceSummary.objects.get(trace_id=trace_id)
    assert (summary.root_service, summary.root_operation, summary.span_count, summary.error_count) == (
        "checkout", "place order", 2, 1)
    assert summary.services == ["checkout"]


def test_spans_from_the_jaeger_exporter_over_udp_are_stored_with_their_trace_summary(span_collector):
    """The OpenTelemetry Jaeger exporter's compact UDP datagrams land in the store."""
    parent, child = export_trace(JaegerExporter(agent_host_name=HOST, agent_port=span_collector.agent_port))
    assert_stored_trace(parent, child)


def test_spans_from_the_jaeger_exporter_over_collector_http_are_stored(span_collector):
    parent, child = export_trace(JaegerExporter(collector_endpoint=span_collector.jaeger_http))
    assert_stored_trace(parent, child)


def test_spans_from_the_otlp_http_exporter_are_stored(span_collector):
    parent, child = export_trace(HttpExporter(endpoint=span_collector.otlp_http))
    assert_stored_trace(parent, child)


def test_spans_from_the_otlp_grpc_exporter_are_stored(span_collector):
    parent, child = export_trace(GrpcExporter(endpoint=span_collector.otlp_grpc, insecure=True))
    assert_stored_trace(parent, child)


def binary_agent_datagram(span_id, trace_low=5):
    span = jaeger_thrift.Span(
        traceIdHigh=0, traceIdLow=trace_low, spanId=span_id, parentSpanId=0, operationName="poll",
        flags=1, startTime=int(time.time() * 1e6), duration=10,
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


def test_binary_agent_datagrams_are_stored_and_garbage_datagrams_are_counted_and_dropped(span_collector):
    """Garbage on the binary UDP port is counted; the good datagram after it is stored."""
    for garbage in (b"\xff" * 64, b"hello", binary_agent_datagram(1)[:-7]):
        send_datagram(span_collector.binary_port, garbage)
    send_datagram(span_collector.binary_port, binary_agent_datagram(span_id=2, trace_low=0xABC))
    [span] = stored_spans(f"{0xABC:032x}", 1)
    assert (span.span_id, span.service, span.operation) == (f"{2:016x}", "legacy", "poll")
    assert span_collector.receivers["Jaeger agent UDP (binary)"].counters.bad_payloads == 3


def otlp_json(trace_id, spans):
    now = time.time_ns()
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "inventory"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [
            {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent or "", "name": name, "kind": 2,
             "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1_500_000)}
            for span_id, parent, name in spans]}],
    }]}


def test_the_same_batch_sent_twice_is_stored_once_and_counted_once(span_collector):
    """An exporter's retry changes nothing: spans, summary and rollup are as after the first send."""
    from collector.models import SpanRollup, TraceSummary

    trace_id = "aa" * 16
    body = otlp_json(trace_id, [("1" * 16, None, "reserve"), ("2" * 16, "1" * 16, "lock row")])
    for _ in range(2):
        response = requests.post(span_collector.otlp_http, json=body, timeout=10)
        assert response.status_code == 200
    stored_spans(trace_id, 2)
    assert TraceSummary.objects.get(trace_id=trace_id).span_count == 2
    rollups = SpanRollup.objects.filter(service="inventory")
    assert sum(r.count for r in rollups) == 2
    assert sum(sum(r.buckets) for r in rollups) == 2
    assert span_collector.collector.span_sink.duplicates == 2


def test_malformed_bodies_answer_400_with_a_reason_and_oversized_ones_413(span_collector):
    bad = requests.post(span_collector.otlp_http, data=b"\xff\x00garbage",
                        headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert bad.status_code == 400
    bad_json = requests.post(span_collector.otlp_http, data=b"{not json",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert bad_json.status_code == 400 and bad_json.text
    bad_thrift = requests.post(span_collector.jaeger_http, data=b"\x0c\x00\x01garbage",
                               headers={"Content-Type": "application/x-thrift"}, timeout=10)
    assert bad_thrift.status_code == 400 and bad_thrift.text
    huge = requests.post(span_collector.otlp_http, data=b"\x00" * (17 * 1024 * 1024),
                         headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert huge.status_code == 413


def test_odd_spans_are_stored_with_notes_or_refused_with_a_reason_never_a_crash(span_collector):
    """Unknown parents and 10,000 tags are stored (tags capped, noted); an implausible start is refused."""
    from collector.models import Span

    trace_id = "bb" * 16
    body = otlp_json(trace_id, [("3" * 16, "9" * 16, "orphan")])
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [
        {"key": f"k{i}", "value": {"stringValue": "<script>x</script>"}} for i in range(10_000)]
    ancient = otlp_json("cc" * 16, [("4" * 16, None, "ancient")])
    ancient["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "1000"
    assert requests.post(span_collector.otlp_http, json=body, timeout=10).status_code == 200
    assert requests.post(span_collector.otlp_http, json=ancient, timeout=10).status_code == 200
    [orphan] = stored_spans(trace_id, 1)
    assert orphan.parent_span_id == "9" * 16 and len(orphan.tags) == 1000 and "truncated" in orphan.notes
    wait_until(lambda: span_collector.collector.span_sink.refused == 1, 10, "the ancient span to be refused")
    assert not Span.objects.filter(trace_id="cc" * 16).exists()


def test_while_the_database_is_down_exporters_are_told_to_retry_and_their_retry_is_stored(span_collector, monkeypatch):
    """HTTP answers 503 and gRPC UNAVAILABLE, nothing is lost: the same request later is stored."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from collector import db

    sink = span_collector.collector.span_sink
    run_in_loop = lambda coroutine: asyncio.run_coroutine_threadsafe(coroutine, span_collector.loop).result(10)  # noqa: E731
    monkeypatch.setattr(db, "conninfo", lambda: "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2")
    run_in_loop(sink.close())  # the next batch has to connect, and cannot
    trace_id = "dd" * 16
    body = otlp_json(trace_id, [("7" * 16, None, "settle")])
    assert requests.post(span_collector.otlp_http, json=body, timeout=15).status_code == 503
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    grpc_span = resource_spans.scope_spans.add().spans.add()
    grpc_span.trace_id, grpc_span.span_id, grpc_span.name = bytes.fromhex("de" * 16), bytes.fromhex("8" * 16), "grpc"
    grpc_span.start_time_unix_nano = grpc_span.end_time_unix_nano = time.time_ns()
    with grpc.insecure_channel(span_collector.otlp_grpc) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=15)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    monkeypatch.undo()
    assert requests.post(span_collector.otlp_http, json=body, timeout=15).status_code == 200
    assert [s.operation for s in stored_spans(trace_id, 1)] == ["settle"]
    assert sink.db_errors == 2
