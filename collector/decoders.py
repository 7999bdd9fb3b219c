"""Wire-format decoders: a raw broker message (subject, headers, bytes) becomes a `Decoded`.

Pure functions without I/O. `decode()` never raises: whatever cannot be understood is described in
`Decoded.note`, and the store keeps the raw bytes whatever happens here.

Formats, tried in this order (the first that matches wins):

- ``cloudevents-binary``: a ``ce-specversion`` header (also the Kafka ``ce_`` and AMQP ``cloudEvents:`` /
  ``cloudEvents_`` prefixes); the body is the event data.
- empty body: ``raw`` with the note "empty message"; bytes that are not UTF-8: ``raw``; UTF-8 that is not JSON:
  ``text``. Their payload is None (the raw bytes are the message); headers still give type, version, ids.
- a JSON object with ``specversion``: ``cloudevents`` (structured mode, ``data`` or ``data_base64``).
- a JSON object with ``Payload`` and ``Topic`` or ``ID``: ``gomicro-event`` (Go Micro's ``events.Event``
  as the natsjs stream stores it; ``Payload`` is base64 of the user's bytes).
- a JSON object with ``Header`` and ``Body``: ``gomicro-broker`` (Go Micro's ``broker.Message``).
- a JSON object with ``body`` and ``type`` or ``version``: ``envelope``. A string body is taken as JSON text
  when it parses as an object or array, else as base64 of JSON when it decodes to one, else kept as the string.
- any other JSON value: ``json``.

Bytes inside an envelope (Go Micro ``Payload``/``Body``, CloudEvents ``data_base64`` and binary bodies) become
the parsed JSON value, else the text as a JSON string (with a note, unless a ``text/*`` content type says it
is text), else nothing (binary; the note gives the size).

Type, version, producer, key and event id come from the envelope's own fields first, then from its metadata
(Go Micro ``Metadata``, broker ``Header``), then from the message headers, then from fields of a JSON object
payload; header names match case-insensitively. A type ending in a version (``order.created.v2``) is split;
a schema URL (``.../v2``) gives the version when nothing else does. Trace context comes from W3C
``traceparent``, Jaeger ``uber-trace-id`` or B3, found in the envelope first, then in the headers.

The payload is always safe for PostgreSQL jsonb: no NUL character, no unpaired surrogate, no NaN/Infinity,
nested at most `Rules.max_depth` deep; a payload that breaks one of these is left out (None) and the note
says why. Labels (type, version, ...) have control characters replaced by U+FFFD and are cut to
`Rules.max_label_length`.

JSON is parsed with orjson when it is installed (several times faster), else with the json module; both
give the same values except that orjson reads integers wider than 64 bits as floats (the raw bytes keep
them exact).
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote

try:  # several times faster than the json module; decoding falls back to json without it
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

FORMATS = ("gomicro-event", "gomicro-broker", "envelope", "cloudevents", "cloudevents-binary", "json", "text", "raw")


@dataclass(frozen=True)
class Rules:
    """Decoding rules (edited in the admin). Header names are matched case-insensitively; field paths are
    dotted keys into a JSON object payload (``meta.type``). Constructing Rules validates and compiles the
    patterns once (build one per change of the rules, not per message) and raises ValueError, so a form
    can check an operator's edit by building one."""

    version_headers: tuple[str, ...] = (
        "version", "event-version", "x-event-version", "Micro-Version", "schema-version", "x-schema-version",
    )
    type_headers: tuple[str, ...] = ("type", "event-type", "x-event-type", "message-type", "Micro-Event-Type")
    producer_headers: tuple[str, ...] = (
        "Micro-From-Service", "producer", "service", "x-service", "x-producer", "app-id",
    )
    key_headers: tuple[str, ...] = ("key", "message-key", "partition-key", "partitionkey", "x-message-key")
    # Nats-Msg-Id is a deduplication id; producers usually set it to the event id, so it comes last.
    id_headers: tuple[str, ...] = ("Micro-Id", "event-id", "x-event-id", "message-id", "id", "Nats-Msg-Id")
    schema_headers: tuple[str, ...] = ("dataschema", "schema", "x-schema", "schema-url")
    payload_type_fields: tuple[str, ...] = ("type", "event_type", "eventType")
    payload_version_fields: tuple[str, ...] = (
        "version", "event_version", "eventVersion", "schema_version", "schemaVersion",
    )
    payload_id_fields: tuple[str, ...] = ("event_id", "eventId")
    type_version_suffix: str = r"^(?P<type>.+?)[._-][vV](?P<version>\d+)$"
    schema_version: str = r"/[vV](?P<version>\d+)(?:[/#?.]|$)"
    # Some systems publish each event type on its own subject: take the type from it when nothing else names it.
    type_from_subject: bool = False
    max_depth: int = 256
    max_label_length: int = 256

    _index: dict = field(init=False, repr=False, compare=False, hash=False)
    _ce_index: dict = field(init=False, repr=False, compare=False, hash=False)
    _paths: dict = field(init=False, repr=False, compare=False, hash=False)
    _suffix: re.Pattern = field(init=False, repr=False, compare=False, hash=False)
    _schema: re.Pattern = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        set_ = object.__setattr__
        # Header name -> [(field, rank)], so a message's few headers are looked up instead of every rule name.
        index, ce_index = {}, {}
        for what in ("version", "type", "producer", "key", "id", "schema"):
            attr = what + "_headers"
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(f"{attr} must be a list of header names")
            set_(self, attr, tuple(value))
            for rank, name in enumerate(n.strip().lower() for n in value):
                index.setdefault(name, []).append((what, rank))
                if what in ("version", "key"):
                    # CloudEvents extension attribute names are lowercase letters and digits only.
                    ce_index.setdefault(name.replace("-", "").replace("_", ""), []).append((what, rank))
        paths = {}
        for attr in ("payload_type_fields", "payload_version_fields", "payload_id_fields"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(n, str) for n in value):
                raise ValueError(f"{attr} must be a list of field paths")
            set_(self, attr, tuple(value))
            paths[attr] = tuple(tuple(p.split(".")) for p in value if p)
        for attr in ("max_depth", "max_label_length"):
            if not isinstance(getattr(self, attr), int) or getattr(self, attr) < 1:
                raise ValueError(f"{attr} must be a positive integer")
        set_(self, "_index", index)
        set_(self, "_ce_index", ce_index)
        set_(self, "_paths", paths)
        set_(self, "_suffix", _compile(self.type_version_suffix, "type_version_suffix"))
        set_(self, "_schema", _compile(self.schema_version, "schema_version"))


def _compile(pattern: str, attr: str) -> re.Pattern:
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"{attr} is not a valid regular expression: {exc}") from None
    if "version" not in compiled.groupindex:
        raise ValueError(f"{attr} must have a named group (?P<version>...)")
    return compiled


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Decoded:
    format: str  # one of FORMATS
    event_id: str | None
    type: str | None
    version: str | None
    producer: str | None
    key: str | None
    trace_id: str | None  # 32 lowercase hex
    span_id: str | None  # 16 lowercase hex
    time: datetime | None  # aware UTC, from the envelope
    payload: object | None  # JSON value safe for jsonb
    note: str | None  # what could not be decoded, None when everything was


def decode(subject: str, headers: Mapping[str, str] | None, data: bytes, rules: Rules = DEFAULT_RULES) -> Decoded:
    """Decode one broker message. Never raises."""
    try:
        return _decode(subject, headers, data, rules)
    except Exception as exc:  # a decoder bug must not stop ingestion: the raw bytes are still stored
        note = _clean_note(f"decoder failed: {type(exc).__name__}: {exc}")
        return Decoded("raw", None, None, None, None, None, None, None, None, None, note)


# --- trace context -------------------------------------------------------------------------------------------

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


# --- the decoder ---------------------------------------------------------------------------------------------


class _TooDeep(Exception):
    pass


class _NonFinite(Exception):
    pass


def _reject_constant(name):
    raise _NonFinite(name)


def _finite_float(text):
    number = float(text)
    if not math.isfinite(number):  # 1e400 parses to inf, which jsonb cannot store
        raise _NonFinite(text)
    return number


_strict_loads = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_JSONB_UNSAFE = re.compile("[\x00\ud800-\udfff]")
_CE_PREFIXES = ("ce-", "ce_", "cloudevents:", "cloudevents_")


class _Draft:
    """What a format decoder found; `_finish` fills the gaps from headers and payload fields."""

    __slots__ = ("format", "notes", "maps", "trace_maps", "event_id", "type", "version", "producer", "key",
                 "schema", "time", "payload")

    def __init__(self, format, notes):
        self.format = format
        self.notes = notes
        self.maps = []  # lowered metadata maps, searched before the message headers
        self.trace_maps = []
        self.event_id = self.type = self.version = self.producer = self.key = None
        self.schema = self.time = self.payload = None


def _decode(subject, headers, data, rules):
    notes = []
    hdrs = _lowered(headers) if headers else {}
    if data is None:
        data = b""
    elif type(data) is not bytes:
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if hdrs:
        for prefix in _CE_PREFIXES:
            if prefix + "specversion" in hdrs:
                return _finish(_cloudevents_binary(hdrs, prefix, data, notes, rules), hdrs, subject, rules)
    if not data:
        notes.append("empty message")
        return _finish(_Draft("raw", notes), hdrs, subject, rules)
    try:
        doc, origin = _loads(data)
    except UnicodeDecodeError as exc:
        notes.append(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return _finish(_Draft("raw", notes), hdrs, subject, rules)
    except _TooDeep:
        notes.append("JSON nested too deep to parse")
        return _finish(_Draft("text", notes), hdrs, subject, rules)
    except ValueError as exc:
        notes.append(f"not JSON: {exc}")
        return _finish(_Draft("text", notes), hdrs, subject, rules)
    if type(doc) is dict:
        if "specversion" in doc:
            draft = _cloudevents(doc, origin, notes, rules)
        elif "Payload" in doc and ("Topic" in doc or "ID" in doc):
            draft = _gomicro_event(doc, notes, rules)
        elif "Header" in doc and "Body" in doc:
            draft = _gomicro_broker(doc, notes, rules)
        elif "body" in doc and ("type" in doc or "version" in doc):
            draft = _envelope(doc, origin, notes, rules)
        else:
            draft = _Draft("json", notes)
            draft.payload = _checked(doc, origin, "payload", notes, rules)
    else:
        draft = _Draft("json", notes)
        draft.payload = _checked(doc, origin, "payload", notes, rules)
    return _finish(draft, hdrs, subject, rules)


def _loads(raw: bytes):
    """Parse JSON bytes into (value, origin); raises UnicodeDecodeError, ValueError or _TooDeep.

    origin is what `_checked` needs to tell cheaply whether a payload from this value is safe for jsonb:
    the bytes themselves, or None when the value must be walked. orjson parses first because it is several
    times faster; whatever it refuses (lone surrogates, NaN, 1e400, nesting past 1024, invalid JSON) goes
    through the standard library, which parses the acceptable cases and words the error for the others.
    """
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, which both parsers refuse
        raw = raw[3:]
    if orjson is not None:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return value, raw
    text = raw.decode("utf-8")
    try:
        try:
            value = _strict_loads(text)
        except _NonFinite:
            return json.loads(text), None  # parse again for the structure; the walk finds the bad number
    except RecursionError:
        raise _TooDeep from None
    # Only escapes can put a lone surrogate in text that decoded as UTF-8; orjson refuses them, json not.
    return value, None if b"\\ud" in raw or b"\\uD" in raw else raw


def _jsonb_problem(value, max_depth):
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            bad = _JSONB_UNSAFE.search(item)
            if bad:
                return _unsafe_char(bad.group())
        elif kind is dict or kind is list:
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if kind is dict:
                for key in item:
                    bad = _JSONB_UNSAFE.search(key)
                    if bad:
                        return _unsafe_char(bad.group())
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif kind is float and not math.isfinite(item):
            return "holds NaN or Infinity, which jsonb cannot store"
    return None


def _unsafe_char(char):
    if char == "\x00":
        return "holds the NUL character (\\u0000), which jsonb cannot store"
    return "holds an unpaired surrogate, which is not valid Unicode"


def _checked(value, origin, what, notes, rules):
    """The value if jsonb can store it, else None and a note. Byte checks on the JSON it came from spare
    the walk almost always: NUL can only come from a \\u0000 escape, and deep nesting needs many brackets."""
    max_depth = rules.max_depth
    if origin is None or b"\\u0000" in origin or (
            len(origin) > max_depth and origin.count(b"[") + origin.count(b"{") > max_depth):
        problem = _jsonb_problem(value, rules.max_depth)
        if problem:
            notes.append(f"{what} not stored: it {problem}")
            return None
    return value


def _bytes_payload(raw, what, content_type, notes, rules):
    """The payload carried as bytes inside an envelope: JSON value, else text, else nothing."""
    if not raw:
        return None
    ctype = content_type.split(";", 1)[0].strip().lower() if type(content_type) is str else ""
    textual = ctype.startswith("text/")
    # octet-stream says nothing about the bytes, so they are tried like bytes without a content type.
    if ctype and not textual and "json" not in ctype and ctype != "application/octet-stream":
        notes.append(f"{what} is {ctype[:100]} ({len(raw)} bytes), not decoded")
        return None
    if not textual:
        try:
            value, origin = _loads(raw)
            return _checked(value, origin, what, notes, rules)
        except UnicodeDecodeError:
            notes.append(f"{what} is {len(raw)} bytes of binary data, not UTF-8")
            return None
        except _TooDeep:
            notes.append(f"{what} is JSON nested too deep to parse")
            return None
        except ValueError as exc:
            notes.append(f"{what} is not JSON ({exc}); kept as text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        notes.append(f"{what} is {len(raw)} bytes of binary data, not UTF-8")
        return None
    return _checked(text, None, what, notes, rules)


def _base64_payload(value, what, content_type, notes, rules):
    if value is None:
        return None
    if type(value) is not str:
        notes.append(f"{what} is {_kind(value)}, not base64 text")
        return None
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        notes.append(f"{what} is not valid base64")
        return None
    return _bytes_payload(raw, what, content_type, notes, rules)


def _metadata(doc, name, draft):
    meta = doc.get(name)
    if type(meta) is dict:
        meta = _lowered(meta)
        draft.maps.append(meta)
        draft.trace_maps.append(meta)
        return meta
    if meta is not None:
        draft.notes.append(f"{name} is {_kind(meta)}, not an object")
    return {}


def _gomicro_event(doc, notes, rules):
    draft = _Draft("gomicro-event", notes)
    draft.event_id = _label(doc.get("ID"), "ID", notes, rules, numbers=True)
    meta = _metadata(doc, "Metadata", draft)
    draft.time = _time(doc.get("Timestamp"), "Timestamp", notes)
    draft.payload = _base64_payload(doc["Payload"], "Payload", meta.get("content-type"), notes, rules)
    return draft


def _gomicro_broker(doc, notes, rules):
    draft = _Draft("gomicro-broker", notes)
    header = _metadata(doc, "Header", draft)
    draft.payload = _base64_payload(doc["Body"], "Body", header.get("content-type"), notes, rules)
    return draft


def _envelope(doc, origin, notes, rules):
    draft = _Draft("envelope", notes)
    draft.type = _label(doc.get("type"), "type", notes, rules)
    draft.version = _label(doc.get("version"), "version", notes, rules, numbers=True)
    draft.event_id = _label(doc.get("id"), "id", notes, rules, numbers=True)
    draft.producer = _first_label(doc, ("producer", "source", "service"), notes, rules)
    draft.key = _label(doc.get("key"), "key", notes, rules, numbers=True)
    draft.schema = _first_label(doc, ("dataschema", "schema"), notes, rules)
    stamp = doc.get("timestamp")
    draft.time = _time(doc.get("time") if stamp is None else stamp, "timestamp", notes)
    _metadata(doc, "metadata", draft)
    draft.trace_maps.insert(0, doc)
    body = doc["body"]
    if type(body) is str:
        body = _string_body(body, notes, rules)
    else:
        body = _checked(body, origin, "body", notes, rules)
    draft.payload = body
    return draft


def _string_body(body, notes, rules):
    """A string body is JSON text, base64 of JSON, or just a string, in that order of belief."""
    start = body.lstrip()[:1]
    if start == "{" or start == "[":
        try:
            value, origin = _loads(body.encode("utf-8"))
            return _checked(value, origin, "body", notes, rules)
        except (ValueError, _TooDeep):  # UnicodeEncodeError (a lone surrogate) is a ValueError too
            pass
    elif len(body) >= 4 and len(body) % 4 == 0:
        try:
            raw = binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw[:1] in (b"{", b"["):
            try:
                value, origin = _loads(raw)
                return _checked(value, origin, "body", notes, rules)
            except (ValueError, _TooDeep):
                pass
    return _checked(body, None, "body", notes, rules)


def _cloudevents_common(attrs, draft, rules):
    notes = draft.notes
    spec = attrs.get("specversion")
    if spec != "1.0":
        notes.append(f'specversion {_short(spec)} is not "1.0"; read as 1.0')
    for required in ("id", "source", "type"):
        if attrs.get(required) is None:
            notes.append(f"CloudEvent without {required}")
    draft.event_id = _label(attrs.get("id"), "id", notes, rules)
    draft.type = _label(attrs.get("type"), "type", notes, rules)
    draft.producer = _label(attrs.get("source"), "source", notes, rules)
    draft.schema = _label(attrs.get("dataschema"), "dataschema", notes, rules)
    draft.time = _time(attrs.get("time"), "time", notes)
    found = _header_values([attrs], rules._ce_index)
    draft.version = _found(found, "version", notes, rules, True)
    draft.key = _found(found, "key", notes, rules, True)
    draft.trace_maps.append(attrs)


def _cloudevents(doc, origin, notes, rules):
    draft = _Draft("cloudevents", notes)
    _cloudevents_common(doc, draft, rules)
    if "data" in doc:
        if "data_base64" in doc:
            notes.append("both data and data_base64; data used")
        draft.payload = _checked(doc["data"], origin, "data", notes, rules)
    elif "data_base64" in doc:
        draft.payload = _base64_payload(doc["data_base64"], "data_base64", doc.get("datacontenttype"), notes, rules)
    return draft


def _cloudevents_binary(hdrs, prefix, data, notes, rules):
    draft = _Draft("cloudevents-binary", notes)
    size = len(prefix)
    attrs = {}
    for name, value in hdrs.items():
        if name.startswith(prefix):
            # The HTTP binding percent-encodes characters that headers cannot carry.
            attrs[name[size:]] = unquote(value) if type(value) is str and "%" in value else value
    _cloudevents_common(attrs, draft, rules)
    content_type = attrs.get("datacontenttype") or hdrs.get("content-type")
    draft.payload = _bytes_payload(data, "data", content_type, notes, rules)
    return draft


def _finish(draft, hdrs, subject, rules):
    notes = draft.notes
    maps = draft.maps
    maps.append(hdrs)
    found = _header_values(maps, rules._index) if any(maps) else {}
    payload = draft.payload if type(draft.payload) is dict else None
    event_id, type_, version, producer, key = draft.event_id, draft.type, draft.version, draft.producer, draft.key
    if found or payload is not None:  # the common message with neither skips the lookups
        paths = rules._paths
        if event_id is None:
            event_id = _found(found, "id", notes, rules, True) \
                or _from_payload(payload, paths["payload_id_fields"], notes, rules, True)
        if type_ is None:
            type_ = _found(found, "type", notes, rules, False) \
                or _from_payload(payload, paths["payload_type_fields"], notes, rules, False)
        if version is None:
            version = _found(found, "version", notes, rules, True) \
                or _from_payload(payload, paths["payload_version_fields"], notes, rules, True)
        if producer is None:
            producer = _found(found, "producer", notes, rules, False)
        if key is None:
            key = _found(found, "key", notes, rules, True)
    if type_ is None and rules.type_from_subject:
        type_ = _label(subject, "subject", notes, rules)

    if type_ is not None:
        match = rules._suffix.match(type_)
        if match:
            if "type" in match.re.groupindex and match["type"]:
                type_ = match["type"]
            version = version or match["version"] or None
    if version is None:
        schema = draft.schema or _found(found, "schema", notes, rules, False)
        if schema is not None:
            match = rules._schema.search(schema)
            if match:
                version = match["version"] or None
    if version is not None and len(version) > 1 and version[0] in "vV" and version[1].isdigit():
        version = version[1:]

    trace_id = span_id = None
    for source in draft.trace_maps:
        trace_id, span_id = _trace_from(source)
        if trace_id:
            break
    else:
        if hdrs:
            trace_id, span_id = _trace_from(hdrs)

    note = _clean_note("; ".join(notes)) if notes else None
    return Decoded(draft.format, event_id, type_, version, producer, key, trace_id, span_id, draft.time,
                   draft.payload, note)


# --- small helpers -------------------------------------------------------------------------------------------


def _lowered(mapping):
    try:
        return {k.lower(): v for k, v in mapping.items() if type(k) is str}
    except AttributeError:  # not a mapping at all
        return {}


def _header_values(maps, index):
    """{field: (header name, value)} for the first matching header of each field: earlier maps win, then
    the rule's order of names."""
    found = {}
    for mapping in maps:
        best = {}
        for name, value in mapping.items():
            hits = index.get(name)
            if hits is None or value is None:
                continue
            for what, rank in hits:
                if what not in found and (what not in best or rank < best[what][0]):
                    best[what] = (rank, name, value)
        for what, (_, name, value) in best.items():
            found[what] = (name, value)
    return found


def _found(found, what, notes, rules, numbers):
    hit = found.get(what)
    return None if hit is None else _label(hit[1], f"{what} ({hit[0]})", notes, rules, numbers)


def _from_payload(payload, paths, notes, rules, numbers):
    """The first usable label among payload fields. They are the user's data, not an envelope: a field of
    another type is simply not the one meant, so it is skipped without a note."""
    if payload is None:
        return None
    for path in paths:
        value = payload
        for step in path:
            value = value.get(step) if type(value) is dict else None
        kind = type(value)
        if kind is str or (numbers and (kind is int or kind is float)):
            label = _label(value, f"payload field {'.'.join(path)}", notes, rules, numbers)
            if label is not None:
                return label
    return None


def _first_label(doc, names, notes, rules):
    for name in names:
        if doc.get(name) is not None:
            return _label(doc[name], name, notes, rules)
    return None


def _label(value, what, notes, rules, numbers=False):
    """A short, clean string for an indexed column, or None (with a note when the value was unusable)."""
    kind = type(value)
    if kind is str:
        text = value
    elif numbers and (kind is int or (kind is float and math.isfinite(value))):
        text = str(value) if abs(value) < 10**100 else None
        if text is None:
            notes.append(f"{what} is a number too large to use")
            return None
    elif kind is bytes:
        text = value.decode("utf-8", "replace")
    else:
        if value is not None:
            notes.append(f"{what} is {_kind(value)}, not a string")
        return None
    text = text.strip()
    if not text:
        return None
    if _CONTROL.search(text):
        text = _CONTROL.sub("\ufffd", text)
        notes.append(f"{what} had control characters (replaced by U+FFFD)")
    if len(text) > rules.max_label_length:
        text = text[: rules.max_label_length]
        notes.append(f"{what} cut to {rules.max_label_length} characters")
    return text


def _time(value, what, notes):
    """Aware UTC datetime from RFC 3339 text (Go's nanoseconds included) or a Unix epoch number in seconds,
    milliseconds, microseconds or nanoseconds. Go's zero time means "not set"."""
    if value is None:
        return None
    kind = type(value)
    try:
        if kind is str:
            text = value.strip()
            try:
                stamp = datetime.fromisoformat(text)
            except ValueError:
                stamp = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lowercase t and z
            if stamp.year == 1 and stamp.month == 1 and stamp.day == 1:
                return None
            if stamp.tzinfo is None:  # no offset: producers that omit it mean UTC
                return stamp.replace(tzinfo=timezone.utc)
            return stamp.astimezone(timezone.utc)
        if kind is int or kind is float:
            magnitude = abs(value)
            seconds = value / 1e9 if magnitude >= 1e17 else value / 1e6 if magnitude >= 1e14 \
                else value / 1e3 if magnitude >= 1e11 else value
            return datetime.fromtimestamp(seconds, timezone.utc)
    except (ValueError, OverflowError, OSError):
        notes.append(f"{what} {_short(value)} is not a time")
        return None
    notes.append(f"{what} is {_kind(value)}, not a time")
    return None


def _kind(value):
    kind = type(value)
    if kind is dict:
        return "an object"
    if kind is list:
        return "an array"
    if kind is bool:
        return "a boolean"
    if kind is int or kind is float:
        return "a number"
    if kind is str:
        return "a string"
    return f"a {kind.__name__}"


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean_note(note):
    # Notes quote what came in (a content type, an exception message): keep them printable and bounded.
    return _CONTROL.sub("\ufffd", note)[:2000]
