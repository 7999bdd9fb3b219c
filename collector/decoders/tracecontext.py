"""Trace context: W3C ``traceparent``, Jaeger ``uber-trace-id`` and B3 (single ``b3`` or multi
``X-B3-*``), read from headers, metadata or envelope fields."""

from __future__ import annotations

from collections.abc import Mapping

from collector.decoders.common import _lowered

_HEX = frozenset("0123456789abcdef")


def parse_trace_context(headers: Mapping[str, object] | None) -> tuple[str | None, str | None]:
    """(trace_id, span_id) from W3C ``traceparent``, Jaeger ``uber-trace-id``, B3 single ``b3`` or multi
    ``X-B3-TraceId``/``X-B3-SpanId`` (tried in this order; names case-insensitive). Ids come back as 32 and
    16 lowercase hex digits, shorter ones left-padded with zeros; (None, None) when nothing valid is there."""
    return _trace_from(_lowered(headers)) if headers else (None, None)


def _hex_id(value: str, width: int) -> str | None:
    value = value.strip().lower()
    if not value or len(value) > width or not _HEX.issuperset(value):
        return None
    value = value.rjust(width, "0")
    return None if value == "0" * width else value


def _trace_from(h: Mapping[str, object]) -> tuple[str | None, str | None]:
    value = h.get("traceparent")
    if type(value) is str:
        parts = value.strip().split("-")
        # Later W3C versions may append fields; version ff is forbidden.
        if len(parts) >= 4 and len(parts[0]) == 2 and parts[0].lower() != "ff" and len(parts[1]) == 32 \
                and len(parts[2]) == 16:
            trace, span = _hex_id(parts[1], 32), _hex_id(parts[2], 16)
            if trace and span:
                return trace, span
    value = h.get("uber-trace-id")
    if type(value) is str:
        # Jaeger clients URL-encode the colons when the value travels in an HTTP header.
        parts = value.replace("%3A", ":").replace("%3a", ":").split(":")
        if len(parts) == 4:
            trace, span = _hex_id(parts[0], 32), _hex_id(parts[1], 16)
            if trace and span:
                return trace, span
    value = h.get("b3")
    if type(value) is str:
        parts = value.split("-")
        if len(parts) >= 2 and len(parts[0]) in (16, 32) and len(parts[1]) == 16:
            trace, span = _hex_id(parts[0], 32), _hex_id(parts[1], 16)
            if trace and span:
                return trace, span
    trace, span = h.get("x-b3-traceid"), h.get("x-b3-spanid")
    if type(trace) is str and len(trace.strip()) in (16, 32):
        trace = _hex_id(trace, 32)
        if trace:
            return trace, _hex_id(span, 16) if type(span) is str and len(span.strip()) == 16 else None
    return None, None
