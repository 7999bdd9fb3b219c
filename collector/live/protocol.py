"""What travels on the channel layer from the forwarder to the web side, and how events
look on the wire to the browser.

One group, `events.live`. Each message is a batch from one forwarder (`source`, one per
collector process) with a gapless `seq`: a missing number means the transport (Redis at
capacity, a failed send) dropped a batch, and the receiver backfills it from PostgreSQL.

Cursors follow commit order, not ids or receive order: two writers commit out of order,
so a row received (and numbered) earlier may become visible later. A cursor is
`{"rx": watermark, "id": floor}`: `rx` is the highest `received_at` (microseconds since
the epoch) forwarded so far, and `floor` an id below every event received after
`rx - OVERLAP`. Everything not yet seen is in `received_at > rx - OVERLAP AND id > floor`
(the id bound lets PostgreSQL walk the primary key instead of scanning the table); the
overlap brings back some rows already seen, which are dropped by id.
"""
import time
from datetime import datetime, timezone

import orjson

LIVE_GROUP = "events.live"
BATCH_TYPE = "events.batch"  # dispatched to the consumer's `events_batch`

# How far a later-received row may commit before an earlier-received one (two writers,
# batches of up to 5,000): the cursor looks back this far. Microseconds.
OVERLAP = 5_000_000

PREVIEW_CHARS = 160
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(moment):
    """A datetime as whole microseconds since the epoch (the cursors' unit)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value):
    return datetime.fromtimestamp(value / 1_000_000, timezone.utc)


def preview(payload, raw):
    """The first characters of a message, for the row and the text filter: the decoded
    payload as JSON when there is one, else the raw bytes as text."""
    if payload is not None:
        try:
            text = orjson.dumps(payload)[: PREVIEW_CHARS * 4].decode("utf-8", "replace")
        except TypeError:  # integers wider than 64 bits
            text = str(payload)
    else:
        text = bytes(raw[: PREVIEW_CHARS * 4] if raw else b"").decode("utf-8", "replace")
    return text[:PREVIEW_CHARS]


# An event travels as a list in these positions (every web process unpacks every event:
# a list costs a third of a map), and reaches the browser as a dict with these names.
# Times are microseconds since the epoch; `committed` is the commit time in seconds,
# which the benchmark measures delays from (None for a backfilled row).
FIELDS = ("id", "rx", "ts", "subject", "type", "version", "service", "key", "size", "note", "preview", "committed")
ID, RX, TS, SUBJECT, TYPE, VERSION, SERVICE, KEY, SIZE, NOTE, PREVIEW, COMMITTED = range(len(FIELDS))


def shape(ident, received_at, ts, subject, type_, version, producer, key, size, note, payload, raw, committed=None):
    """One event as forwarded (and as the filters see it)."""
    return [ident, micros(received_at), micros(ts), subject, type_ or "", version or "", producer or "", key or "",
            size, note or "", preview(payload, raw), committed]


def shape_row(row, committed):
    """A committed `EventRow` (with its id) as forwarded."""
    return shape(row.id, row.received_at, row.ts, row.subject, row.type, row.version, row.producer, row.key,
                 row.size, row.note, row.payload, row.raw, committed)


def for_browser(event):
    return dict(zip(FIELDS, event))


def batch(source, seq, since, watermark, floor, events):
    """A channel-layer message: `since` is the watermark before this batch, so a receiver
    that missed the previous one knows up to where to backfill; `sent` (seconds since the
    epoch) splits a delay into the collector's part and the web's."""
    return {
        "type": BATCH_TYPE,
        "source": source,
        "seq": seq,
        "since": since,
        "rx": watermark,
        "floor": floor,
        "ids": [event[ID] for event in events],
        "events": events,
        "sent": time.time(),
    }
