"""Turn store rows into what pages and the API show; shared by both."""
import json

from django.urls import reverse

HEX_LIMIT = 64 * 1024


def sparkline_points(values, width=120, height=24):
    """Polyline points for a series of counts in a width × height box: zero on the bottom
    line, the highest value on the top one (1 unit of padding each), so a small change on a
    large count stays small. A single value is a level line. frontend/src/sparkline.js
    draws rows added in the browser with the same formula (tests/test_sparklines.py)."""
    if not values:
        return ""
    series = list(values) if len(values) > 1 else [values[0], values[0]]
    peak = max(series) if max(series) > 0 else 1
    step = width / (len(series) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (v / peak) * (height - 2):.1f}" for i, v in enumerate(series))


def pretty_payload(payload):
    if payload is None:
        return None
    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False)


def raw_text(raw):
    """The raw bytes as text when they are UTF-8, else None (the hex view is shown)."""
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def hexdump(raw, limit=HEX_LIMIT):
    data = bytes(raw)[:limit]
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    return "\n".join(lines)


def event_summary(event):
    return {
        "id": event.id,
        "url": reverse("event", args=[event.id]),
        "ts": event.ts.isoformat(),
        "subject": event.subject,
        "stream": event.stream or None,
        "seq": event.seq,
        "best_effort": event.stream == "",
        "size": event.size,
        "truncated": event.truncated,
        "format": event.format,
        "event_id": event.event_id,
        "type": event.type,
        "version": event.version,
        "producer": event.producer,
        "key": event.key,
        "trace_id": event.trace_id,
        "note": event.note,
    }


def event_detail(event):
    data = event_summary(event)
    data.update({
        "received_at": event.received_at.isoformat(),
        "headers": event.headers or {},
        "span_id": event.span_id,
        "payload": event.payload,
        "raw_base64": __import__("base64").b64encode(bytes(event.raw)).decode(),
        "sha256": bytes(event.sha256).hex() if event.sha256 else None,
    })
    return data


def page_links(request, rows, more):
    """Query strings for the Older / Newer links of a keyset-paginated list (newest first)."""
    from collector.events.readers import encode_cursor

    if not rows:
        return None, None

    def query(**change):
        params = request.GET.copy()
        params.pop("before", None)
        params.pop("after", None)
        params.update(change)
        return params.urlencode()

    going_newer = bool(request.GET.get("after"))
    older = query(before=encode_cursor(rows[-1])) if (more and not going_newer) or going_newer else None
    newer = None
    if request.GET.get("before") or (going_newer and more):
        newer = query(after=encode_cursor(rows[0]))
    return older, newer


def window_json(window):
    """A time window as the JSON API gives it back."""
    return {"from": window.start.isoformat(), "to": window.end.isoformat(), "last": window.last}
