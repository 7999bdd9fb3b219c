"""Payloads: JSON parsing and what PostgreSQL jsonb can store.

Bytes inside an envelope (Go Micro ``Payload``/``Body``, CloudEvents ``data_base64`` and binary bodies) become
the parsed JSON value, else the text as a JSON string (with a note, unless a ``text/*`` content type says it
is text), else nothing (binary; the note gives the size).

The payload is always safe for PostgreSQL jsonb: no NUL character, no unpaired surrogate, no NaN/Infinity,
nested at most `Rules.max_depth` deep; a payload that breaks one of these is left out (None) and the note
says why.

JSON is parsed with orjson when it is installed (several times faster), else with the json module; both
give the same values except that orjson reads integers wider than 64 bits as floats (the raw bytes keep
them exact).
"""

from __future__ import annotations

import binascii
import json
import math
import re

from collector.decoders.common import _kind

try:  # several times faster than the json module; decoding falls back to json without it
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


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
_JSONB_UNSAFE = re.compile("[\x00\ud800-\udfff]")


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
