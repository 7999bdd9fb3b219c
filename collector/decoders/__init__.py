"""Wire-format decoders, one module per format: pure functions from bytes and headers to a `Decoded` event,
with a decode note for whatever cannot be understood; `decode()` never raises. Modules here import the
standard library and orjson only, nothing else of the project. `dispatch` tells which format is which."""

from collector.decoders.dispatch import decode
from collector.decoders.result import FORMATS, Decoded
from collector.decoders.rules import DEFAULT_RULES, Rules
from collector.decoders.tracecontext import parse_trace_context

__all__ = ["DEFAULT_RULES", "FORMATS", "Decoded", "Rules", "decode", "parse_trace_context"]
