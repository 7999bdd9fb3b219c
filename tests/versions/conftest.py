"""Fixtures of the versions tests: a running collector with span receivers, dead-letter
capture and version learning (the linker every half second), and helpers that publish
versioned envelopes through JetStream and export real spans over OTLP/HTTP."""
import json
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import RunningCollector, nats_publish, wait_until

HOST = "127.0.0.1"


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def versions_collector(transactional_db, settings, monkeypatch):
    from collector.deadletters import capture
    from collector.traces import service as tracing
    from collector.versions import linker
    from collector.versions import service as versions

    for name in ("JAEGER_AGENT_PORT", "JAEGER_BINARY_PORT", "JAEGER_HTTP_PORT", "OTLP_HTTP_PORT", "OTLP_GRPC_PORT"):
        setattr(settings, name, 0)
    settings.EVENTSCOPE_SPANS_HOST = HOST
    monkeypatch.setattr(linker, "INTERVAL", 0.5)
    monkeypatch.setattr(linker, "SETTLE", 0.5)
    running = RunningCollector(installs=[tracing.install, capture.install, versions.install])
    wait_until(lambda: len(running.collector.span_receivers) == 5, 20, "the span receivers to listen")
    running.otlp_port = next(r.port for r in running.collector.span_receivers if r.name == "OTLP/HTTP")
    yield running
    running.stop()


def envelope(type_, version, body, event_id=None):
    """A versioned envelope and its headers (the id as Nats-Msg-Id, as the demo sends it)."""
    event_id = event_id or uuid.uuid4().hex
    document = {"type": type_, "body": body, "timestamp": "2026-11-30T12:00:00Z"}
    if version is not None:
        document["version"] = version
    return event_id, json.dumps(document).encode()


def publish_envelopes(url, stream, subject, items, producer="order"):
    """Publish [(type, version, body)] on `subject` (creating `stream`); returns their ids."""
    ids, messages = [], []
    for type_, version, body in items:
        event_id, data = envelope(type_, version, body)
        ids.append(event_id)
        messages.append((subject, data, {"Nats-Msg-Id": event_id, "Micro-From-Service": producer}))
    nats_publish(url, messages, stream=stream, subjects=[subject])
    return ids


class Spans:
    """Real OpenTelemetry spans exported over OTLP/HTTP to the collector, as services send them."""

    def __init__(self, port):
        self.endpoint = f"http://{HOST}:{port}/v1/traces"
        self.providers = []

    def tracer(self, service, version="1.0.0", instance=None):
        resource = Resource.create({"service.name": service, "service.version": version,
                                    "service.instance.id": instance or unique(service + "-")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=self.endpoint)))
        self.providers.append(provider)
        return provider.get_tracer("shop")

    @staticmethod
    def consume(tracer, subject, message_ids, group, error=False):
        for message_id in message_ids:
            attributes = {"messaging.system": "nats", "messaging.destination.name": subject,
                          "messaging.operation": "process", "messaging.message.id": message_id,
                          "messaging.consumer.group.name": group}
            with tracer.start_as_current_span(f"process {subject}", kind=trace.SpanKind.CONSUMER,
                                              attributes=attributes) as span:
                if error:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, "failed"))

    @staticmethod
    def produce(tracer, subject, message_ids):
        for message_id in message_ids:
            attributes = {"messaging.system": "nats", "messaging.destination.name": subject,
                          "messaging.operation": "publish", "messaging.message.id": message_id}
            with tracer.start_as_current_span(f"publish {subject}", kind=trace.SpanKind.PRODUCER,
                                              attributes=attributes):
                pass

    def close(self):
        for provider in self.providers:
            provider.shutdown()


@pytest.fixture
def spans(versions_collector):
    exporter = Spans(versions_collector.otlp_port)
    yield exporter
    exporter.close()


def stored(type_, count, timeout=20):
    """Wait until `count` events of `type_` have been learnt: counted in the hourly rollup by
    the collector, and its producers' last message derived from it by the linker."""
    from django.db.models import Max, Sum

    from collector.models import VersionProducer, VersionRollup

    def learnt():
        hours = VersionRollup.objects.filter(type=type_).aggregate(n=Sum("count"), last=Max("last_seen"))
        if (hours["n"] or 0) < count:
            return False
        producers = VersionProducer.objects.filter(type=type_).aggregate(last=Max("last_seen"))["last"]
        return producers is not None and producers >= hours["last"]

    wait_until(learnt, timeout, f"{count} events of {type_} learnt")
