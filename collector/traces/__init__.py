"""Traces: span wire-format decoders (pure: `model`, `jaeger`, `otlp`), the receivers that
serve them, the service that runs them in the collector, the one writer of the span tables
and the readers that pages, the API and the Jaeger API share. Imports `collector.models`,
`collector.partitions` and `collector.db`."""
from collector.traces.model import DecodeResult, Span, SpanDecodeError

__all__ = ["DecodeResult", "Span", "SpanDecodeError"]
