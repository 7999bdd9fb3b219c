"""SPAN_RECEIVER_TOKEN: with a token set, the collector's receivers store spans only from
exporters that send it the way each can (OTLP: `authorization: Bearer`, Jaeger HTTP: Basic
with the token as password); the rest get 401 / UNAUTHENTICATED and are counted on /metrics.
UDP cannot carry a token, so the Jaeger agent ports stay closed unless JAEGER_UDP_OPEN."""
import time

import pytest
from opentelemetry.exporter.jaeger.thrift import JaegerExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import generate_latest

from tests.traces.test_traces_ingest import HOST, SpanCollector, export_trace, hex_trace, stored_spans

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated method __init__:DeprecationWarning")

TOKEN = "s3cret-span-token"
RECEIVER_PORTS = ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT")


class Results(SpanExporter):
    """Passes spans to a real exporter and keeps what the exporter made of the answer."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.results = []

    def export(self, spans):
        self.results.append(self.exporter.export(spans))
        return self.results[-1]

    def shutdown(self):
        self.exporter.shutdown()


@pytest.fixture
def collector_with(transactional_db, settings):
    """collector_with(**settings) -> a collector with its span receivers on free ports."""
    started = []

    def start(**overrides):
        for name in RECEIVER_PORTS:
            setattr(settings, name, 0)
        settings.EVENTSCOPE_SPANS_HOST = HOST
        for name, value in overrides.items():
            setattr(settings, name, value)
        udp_open = overrides.get("JAEGER_UDP_OPEN") or not overrides.get("SPAN_RECEIVER_TOKEN")
        running = SpanCollector(receivers=5 if udp_open else 3)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def exporters(collector, token):
    """The three real exporters that can carry a token, configured with `token` (None: without one)."""
    bearer = {"authorization": f"Bearer {token}"} if token is not None else None
    basic = {"username": "svc", "password": token} if token is not None else {}
    return {
        "Jaeger HTTP": JaegerExporter(collector_endpoint=collector.jaeger_http, **basic),
        "OTLP/HTTP": HttpExporter(endpoint=collector.otlp_http, headers=bearer),
        "OTLP/gRPC": GrpcExporter(endpoint=collector.otlp_grpc, insecure=True, headers=bearer),
    }


def counted(collector, name, counter="unauthorized"):
    text = generate_latest(collector.collector.metrics.registry).decode()
    line = f'eventscope_span_receiver_{counter}_total{{receiver="{name}"}} '
    return float(next(row for row in text.splitlines() if row.startswith(line)).split()[-1])


def test_with_a_token_each_receiver_stores_only_spans_sent_with_it_and_counts_the_rest(collector_with):
    """Without the token and with a wrong one: refused (OTLP exporters report failure), nothing
    stored, two refusals per exporter counted on /metrics; with it: stored."""
    from collector.models import Span

    collector = collector_with(SPAN_RECEIVER_TOKEN=TOKEN)
    refused = {}
    for token in (None, "wrong-token"):
        for name, exporter in exporters(collector, token).items():
            recorder = Results(exporter)
            parent, _ = export_trace(recorder, service=f"refused-{name}")
            refused[(name, token)] = hex_trace(parent)
            if name != "Jaeger HTTP":  # the Jaeger exporter logs a refusal but reports success whatever happens
                assert recorder.results == [SpanExportResult.FAILURE] * 2, (name, token)
    for name, exporter in exporters(collector, TOKEN).items():
        recorder = Results(exporter)
        parent, _ = export_trace(recorder, service=f"allowed-{name}")
        assert [root.service for root in stored_spans(hex_trace(parent), 2)] == [f"allowed-{name}"] * 2
        if name != "Jaeger HTTP":
            assert recorder.results == [SpanExportResult.SUCCESS] * 2
    assert not Span.objects.filter(trace_id__in=refused.values()).exists()
    for name in ("Jaeger HTTP", "OTLP/HTTP", "OTLP/gRPC"):
        assert collector.receivers[name].counters.unauthorized == 4, name
        assert counted(collector, name) == 4.0
        assert counted(collector, name, "spans") == 2.0


def test_with_a_token_the_jaeger_udp_ports_stay_closed(collector_with):
    collector = collector_with(SPAN_RECEIVER_TOKEN=TOKEN)
    assert sorted(collector.ports) == ["Jaeger HTTP", "OTLP/HTTP", "OTLP/gRPC"]


def test_jaeger_udp_open_opens_the_agent_ports_beside_a_token_and_they_store_spans(collector_with):
    collector = collector_with(SPAN_RECEIVER_TOKEN=TOKEN, JAEGER_UDP_OPEN=True)
    parent, _ = export_trace(JaegerExporter(agent_host_name=HOST, agent_port=collector.agent_port))
    assert len(stored_spans(hex_trace(parent), 2)) == 2
    # The token still guards the TCP receivers.
    export_trace(HttpExporter(endpoint=collector.otlp_http))
    assert collector.receivers["OTLP/HTTP"].counters.unauthorized == 2


def test_without_a_token_every_receiver_is_open_as_before(collector_with):
    collector = collector_with()
    assert len(collector.ports) == 5
    for name, exporter in exporters(collector, None).items():
        parent, _ = export_trace(exporter, service=f"open-{name}")
        assert len(stored_spans(hex_trace(parent), 2)) == 2


def test_the_demo_sends_span_receiver_token_through_each_exporter_that_can_carry_it(collector_with):
    """The demo shop reads SPAN_RECEIVER_TOKEN and configures its exporters with it."""
    from demo.config import DemoConfig
    from demo.telemetry import make_exporter

    collector = collector_with(SPAN_RECEIVER_TOKEN=TOKEN)
    config = DemoConfig(spans_host=HOST, spans_token=TOKEN, jaeger_http_port=collector.ports["Jaeger HTTP"],
                        otlp_http_port=collector.ports["OTLP/HTTP"], otlp_grpc_port=collector.ports["OTLP/gRPC"])
    for name in ("jaeger-http", "otlp-http", "otlp-grpc"):
        parent, _ = export_trace(make_exporter(name, config), service=f"demo-{name}")
        assert len(stored_spans(hex_trace(parent), 2)) == 2
    time.sleep(0.2)
    assert sum(r.counters.unauthorized for r in collector.receivers.values()) == 0
