"""Keyset pagination shared by every reader: a page cursor is a time and an id, written
`<seconds>.<micros>_<id>`; a malformed one is a `BadFilter`, which pages answer with 400."""
from datetime import datetime, timezone


class BadFilter(ValueError):
    """A filter or cursor from the query string that cannot be applied; str() says why."""


def encode_cursor(when, ident):
    return f"{when.timestamp():.6f}_{ident}"


def decode_cursor(text):
    """(time, id) of a cursor made by `encode_cursor`."""
    try:
        seconds, ident = text.split("_")
        return datetime.fromtimestamp(float(seconds), timezone.utc), int(ident)
    except (ValueError, OverflowError):
        raise BadFilter(f"bad page cursor {text!r}") from None
