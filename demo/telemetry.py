"""One OpenTelemetry TracerProvider per service instance, and trace context in message headers."""
import logging
import warnings

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)
w3c = TraceContextTextMapPropagator()

# Bounds how long a provider's shutdown can wait on a receiver that is not there.
EXPORT_TIMEOUT = 3


# The exporters log every failed batch; ReportingExporter says it once per outage instead.
NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.jaeger.thrift",
)


class ReportingExporter(SpanExporter):
    """Wraps an exporter so that a receiver that is away is reported once, not once per batch, and
    never raises into the span processor."""

    def __init__(self, exporter, description):
        self.exporter = exporter
        self.description = description
        self.delivering = True

    def export(self, spans):
        try:
            result = self.exporter.export(spans)
            problem = None if result is SpanExportResult.SUCCESS else "the receiver refused or did not answer"
        except Exception as error:
            result, problem = SpanExportResult.FAILURE, f"{type(error).__name__}: {error}"
        if problem and self.delivering:
            log.warning("spans to %s are not delivered (%s); retrying with every batch", self.description, problem)
        elif not problem and not self.delivering:
            log.info("spans to %s are delivered again", self.description)
        self.delivering = problem is None
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.exporter.force_flush(timeout_millis)


def jaeger_exporter(**options):
    """The Jaeger thrift exporter is deprecated upstream, and used on purpose: many services still send it."""
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return JaegerExporter(**options)


def make_exporter(name, config):
    host, token = config.spans_host, config.spans_token
    bearer = {"authorization": f"Bearer {token}"} if token else None
    if name == "jaeger-udp":
        return jaeger_exporter(
            agent_host_name=host, agent_port=config.jaeger_agent_port, udp_split_oversized_batches=True
        )
    if name == "jaeger-http":
        endpoint = f"http://{host}:{config.jaeger_http_port}/api/traces"
        basic = {"username": "demo", "password": token} if token else {}
        return jaeger_exporter(collector_endpoint=endpoint, timeout=EXPORT_TIMEOUT, **basic)
    if name == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"http://{host}:{config.otlp_http_port}/v1/traces", timeout=EXPORT_TIMEOUT,
                                headers=bearer)
    if name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{host}:{config.otlp_grpc_port}", insecure=True, timeout=EXPORT_TIMEOUT,
                                headers=bearer)
    raise ValueError(f"unknown exporter {name!r}")


def make_provider(service, version, instance_id, exporter_name, config):
    """A provider of its own, so every service reports under its own `service.name`.

    With no exporter the spans are still made: their ids are what the messages carry."""
    resource = Resource.create({
        "service.name": service,
        "service.version": version,
        "service.instance.id": instance_id,
        "service.namespace": config.namespace or "shop",
    })
    provider = TracerProvider(resource=resource)
    if exporter_name:
        for logger in NOISY_LOGGERS:
            logging.getLogger(logger).setLevel(logging.CRITICAL)
        exporter = ReportingExporter(make_exporter(exporter_name, config), f"{exporter_name} ({service})")
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=8192,
            schedule_delay_millis=1000,
            export_timeout_millis=EXPORT_TIMEOUT * 1000,
        )
        provider.add_span_processor(processor)
    return provider


def uber_trace_id(span_context):
    """Jaeger's own propagation header, `trace:span:parent:flags`, that older services send."""
    return f"{span_context.trace_id:032x}:{span_context.span_id:016x}:0:{int(span_context.trace_flags):x}"


def inject(jaeger_header=False):
    """Propagation headers for the current span."""
    carrier = {}
    w3c.inject(carrier)
    span_context = trace.get_current_span().get_span_context()
    if jaeger_header and span_context.is_valid:
        carrier["uber-trace-id"] = uber_trace_id(span_context)
    return carrier


def parse_uber_trace_id(value):
    try:
        trace_id, span_id, _parent, flags = value.split(":")
        return trace.SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=trace.TraceFlags(int(flags, 16) & 1)
        )
    except (AttributeError, ValueError):
        return trace.INVALID_SPAN_CONTEXT


def extract(carrier):
    """The producer's span context carried by a message (W3C first, then Jaeger's header)."""
    span_context = trace.get_current_span(w3c.extract(carrier)).get_span_context()
    if not span_context.is_valid and "uber-trace-id" in carrier:
        span_context = parse_uber_trace_id(carrier["uber-trace-id"])
    return span_context


def shutdown(provider):
    """Flush and stop; a receiver that cannot be reached costs at most the export timeout."""
    try:
        provider.shutdown()
    except Exception:  # an exporter's failure must never stop the shop from stopping
        log.exception("span exporter failed while shutting down")
