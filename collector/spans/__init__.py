"""Trace spans: wire-format decoders (pure functions) and the receivers that serve them."""
from collector.spans.model import DecodeResult, Span, SpanDecodeError

__all__ = ["DecodeResult", "Span", "SpanDecodeError"]
