"""Anything that is none of the envelopes: a JSON value is ``json`` with the whole value as payload;
UTF-8 that is not JSON is ``text``; an empty body or bytes that are not UTF-8 are ``raw``. Text and raw
have no payload (the raw bytes are the message) and a note that says why."""

from __future__ import annotations

from collector.decoders.payload import _checked, _TooDeep
from collector.decoders.result import _Draft


def _empty(notes):
    notes.append("empty message")
    return _Draft("raw", notes)


def _unparsed(exc, notes):
    """The draft for a body that `_loads` refused with exc: UnicodeDecodeError, _TooDeep or ValueError."""
    if isinstance(exc, UnicodeDecodeError):
        notes.append(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return _Draft("raw", notes)
    if isinstance(exc, _TooDeep):
        notes.append("JSON nested too deep to parse")
    else:
        notes.append(f"not JSON: {exc}")
    return _Draft("text", notes)


def _json(doc, origin, notes, rules):
    draft = _Draft("json", notes)
    draft.payload = _checked(doc, origin, "payload", notes, rules)
    return draft
