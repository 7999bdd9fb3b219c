"""Span decode rates, from the bytes the real exporters send to the normalised spans.

    .venv/bin/python bench/span_decode.py [seconds per case]

Cases: a Jaeger collector HTTP body (binary Batch, 100 spans), a Jaeger agent UDP
datagram (compact emitBatch, as many spans as the exporter fits in 65,000 bytes)
and an OTLP protobuf ExportTraceServiceRequest of 512 spans (the SDK's batch size).
"""
import socket
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", category=DeprecationWarning)

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.jaeger.thrift.gen.jaeger import ttypes as jaeger  # noqa: E402
from opentelemetry.exporter.jaeger.thrift.send import AgentClientUDP  # noqa: E402
from opentelemetry.exporter.jaeger.thrift.translate import ThriftTranslator, Translate  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

from collector.traces.jaeger import decode_jaeger_agent, decode_jaeger_batch  # noqa: E402
from collector.traces.otlp import decode_otlp_protobuf  # noqa: E402


def web_spans(count):
    """Spans like a small web shop makes: a server span, then database and HTTP client calls."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders", "service.version": "1.4.2", "host.name": "web-1"}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    tracer = provider.get_tracer("opentelemetry.instrumentation.django", "0.60b1")
    while len(recorded.get_finished_spans()) < count:
        with tracer.start_as_current_span("GET /orders/{id}", kind=trace.SpanKind.SERVER) as server:
            server.set_attributes({
                "http.method": "GET", "http.route": "/orders/{id}", "http.target": "/orders/1234?expand=items",
                "http.scheme": "http", "http.status_code": 200, "net.host.port": 8000,
                "http.user_agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
                "net.peer.ip": "10.0.3.17", "http.flavor": "1.1",
            })
            with tracer.start_as_current_span("SELECT orders", kind=trace.SpanKind.CLIENT) as db:
                db.set_attributes({
                    "db.system": "postgresql", "db.name": "shop", "db.user": "shop",
                    "db.statement": "SELECT id, customer_id, total, status FROM orders WHERE id = %s",
                    "net.peer.name": "db", "net.peer.port": 5432,
                })
            with tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT) as call:
                call.set_attributes({"http.method": "POST", "http.url": "http://stock:8080/reserve", "http.status_code": 503})
                call.add_event("exception", {"exception.type": "HTTPError", "exception.message": "503 Service Unavailable"})
                call.set_status(trace.Status(trace.StatusCode.ERROR, "503 Service Unavailable"))
    return list(recorded.get_finished_spans())[:count]


def jaeger_batch(spans):
    """The thrift Batch the OpenTelemetry Jaeger exporter builds for these spans."""
    return jaeger.Batch(
        process=jaeger.Process(serviceName="orders"),
        spans=Translate(spans)._translate(ThriftTranslator()),
    )


def collector_body(spans):
    """What the exporter POSTs to /api/traces: the Batch in thrift binary, no envelope."""
    buffer = TTransport.TMemoryBuffer()
    jaeger_batch(spans).write(TBinaryProtocol.TBinaryProtocol(buffer))
    return buffer.getvalue()


def agent_datagram(spans):
    """The UDP datagram the exporter's agent client sends, caught on a local socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        AgentClientUDP("127.0.0.1", udp.getsockname()[1]).emit(jaeger_batch(spans))
        return udp.recv(70_000)


def largest_datagram(spans):
    for count in range(len(spans), 0, -1):
        buffer_size = len(collector_body(spans[:count]))  # compact is smaller; start near the limit
        if buffer_size < 90_000:
            try:
                return agent_datagram(spans[:count]), count
            except TimeoutError:  # the exporter drops a datagram over 65,000 bytes
                continue
    raise RuntimeError("no datagram fits")


def rate(decode, data, seconds):
    decode(data)  # warm up
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        decode(data)
        runs += 1
    return runs / elapsed


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    spans = web_spans(512)
    datagram, datagram_spans = largest_datagram(spans[:100])
    cases = [
        ("Jaeger HTTP body, thrift binary", 100, collector_body(spans[:100]), lambda d: decode_jaeger_batch(d, "binary")),
        ("Jaeger agent datagram, thrift compact", datagram_spans, datagram, lambda d: decode_jaeger_agent(d, "compact")),
        ("OTLP protobuf request", 512, encode_spans(spans).SerializeToString(), decode_otlp_protobuf),
    ]
    print(f"{'case':40} {'spans':>5} {'bytes':>7} {'batches/s':>10} {'spans/s':>9}")
    for name, count, data, decode in cases:
        assert len(decode(data).spans) == count
        batches = rate(decode, data, seconds)
        print(f"{name:40} {count:5} {len(data):7} {batches:10,.0f} {batches * count:9,.0f}")


if __name__ == "__main__":
    main()
