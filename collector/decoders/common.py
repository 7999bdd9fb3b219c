"""Helpers every format decoder shares: header and metadata lookups (names match case-insensitively),
labels for the indexed columns, times, and the wording of notes.

Labels (type, version, ...) have control characters replaced by U+FFFD and are cut to
`Rules.max_label_length`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _lowered(mapping):
    try:
        return {k.lower(): v for k, v in mapping.items() if type(k) is str}
    except AttributeError:  # not a mapping at all
        return {}


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
