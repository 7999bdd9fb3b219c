"""The time window every page takes from its query string: `?last=15m` or
`?from=<ISO 8601>&to=<ISO 8601>`. A permalink carries it, so a shared link shows
the same slice of time to whoever opens it.

Times are UTC: a `from`/`to` without a zone (`2026-11-30T12:00`) is read as UTC, and the
pages print their times in UTC and say so, so a time copied from a page selects the same
moment. A time with a zone (`…+01:00`, `…Z`) is taken as written. The browser shows local
time only where it says which zone (the `title` of a `<time>`)."""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

CHOICES = ["5m", "15m", "1h", "6h", "24h", "7d"]
DEFAULT = "1h"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_LAST = re.compile(r"^(\d{1,5})([smhd])$")
# The longest window any page or API reads, relative or absolute.
MAX_WINDOW = timedelta(days=366)


class BadWindow(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    last: str | None  # the relative form, when the window is one

    @property
    def seconds(self):
        return (self.end - self.start).total_seconds()

    def query(self):
        """Query-string pairs that reproduce this window."""
        if self.last:
            return {"last": self.last}
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}

    def absolute_query(self):
        """The same window pinned to absolute times, for links that must not drift."""
        return {"from": self.start.isoformat(timespec="seconds"), "to": self.end.isoformat(timespec="seconds")}


def parse_duration(text):
    match = _LAST.match(text or "")
    if not match:
        raise BadWindow(f"last={text!r}: use a number and a unit, like 15m, 6h or 7d")
    amount, unit = int(match.group(1)), match.group(2)
    delta = timedelta(**{_UNITS[unit]: amount})
    if delta > MAX_WINDOW:
        raise BadWindow(f"last={text!r}: at most one year")
    return delta


def _parse_time(name, text):
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise BadWindow(f"{name}={text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:  # pages print UTC and label it so; see the module docstring
        value = value.replace(tzinfo=timezone.utc)
    return value


def check_span(start, end):
    """BadWindow when an absolute window is longer than MAX_WINDOW."""
    if end - start > MAX_WINDOW:
        days = (end - start).total_seconds() / 86400
        raise BadWindow(f"from/to span {days:.0f} days: at most {MAX_WINDOW.days} days (one year)")


def from_query(params, now=None):
    now = now or datetime.now(timezone.utc)
    if params.get("from") or params.get("to"):
        start = _parse_time("from", params["from"]) if params.get("from") else None
        end = _parse_time("to", params["to"]) if params.get("to") else now
        if start is None:
            start = end - parse_duration(params.get("last") or DEFAULT)
        if start >= end:
            raise BadWindow("from must be before to")
        check_span(start, end)
        return Window(start, end, None)
    last = params.get("last") or DEFAULT
    return Window(now - parse_duration(last), now, last)
