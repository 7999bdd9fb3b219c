"""Reads for the live tail: the events a client missed (a gap in the forwarded batches,
or a reconnect), from PostgreSQL, filtered exactly as the live events are."""
import orjson
from django.db import connection, transaction

from collector.live import protocol
from collector.live.filters import pattern_regex

BACKFILL_LIMIT = 500  # rows returned at most; the others are counted
SCAN_LIMIT = 5_000  # rows looked at at most; beyond it the count says "at least"
STATEMENT_TIMEOUT_MS = 5_000

_COLUMNS = "id, received_at, ts, subject, type, version, producer, key, size, note, payload::text, " \
           "substring(raw FROM 1 FOR 640)"


def backfill(filters, lo, floor, hi=None, exclude=(), limit=BACKFILL_LIMIT, scan=SCAN_LIMIT):
    """Events received after `lo` (and up to `hi`), microseconds since the epoch, with an
    id above `floor`, passing `filters`, except the ids in `exclude`. Returns
    `(events, missed, more)`: at most `limit` events (shaped as forwarded), the newest,
    oldest first; how many
    more matched and are not returned; and whether the scan stopped before the window's
    start (then `missed` is a lower bound)."""
    where = ["id > %(floor)s", "received_at > %(lo)s"]
    params = {"floor": floor or 0, "lo": protocol.from_micros(lo), "scan": scan}
    if hi is not None:
        where.append("received_at <= %(hi)s")
        params["hi"] = protocol.from_micros(hi)
    if filters.subject:
        where.append("subject ~ %(subject)s")
        params["subject"] = pattern_regex(filters.subject)
    for field, column in (("service", "producer"), ("type", "type"), ("version", "version")):
        value = getattr(filters, field)
        if value:
            where.append(f"{column} = %({field})s")
            params[field] = value
    if exclude:
        where.append("id <> ALL(%(exclude)s)")
        params["exclude"] = list(exclude)
    # Newest first along the primary key (id, ts) of each day partition: the id floor
    # keeps the walk to the recent rows even in a table of millions.
    sql = f"SELECT {_COLUMNS} FROM collector_event WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %(scan)s"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    more = len(rows) >= scan
    matching = [event for event in map(_shape, rows) if filters.matches(event)]
    shown = matching[:limit]
    shown.sort(key=lambda event: (event[protocol.RX], event[protocol.ID]))
    return shown, len(matching) - len(shown), more


def _shape(row):
    ident, received_at, ts, subject, type_, version, producer, key, size, note, payload, raw = row
    return protocol.shape(ident, received_at, ts, subject, type_, version, producer, key, size, note,
                          None if payload is None else orjson.loads(payload), raw)


def start_cursor(stale_after=30):
    """Where a page that has not had a batch yet would resume from: the oldest cursor the
    live collectors wrote into their last heartbeat (a cursor stays valid as it ages, it
    only reaches further back). None when no collector reports one."""
    from datetime import timedelta

    from django.utils import timezone

    from collector.models import CollectorHeartbeat

    cursors = []
    recent = CollectorHeartbeat.objects.filter(beat__gte=timezone.now() - timedelta(seconds=stale_after))
    for counters in recent.values_list("counters", flat=True):
        cursor = (counters or {}).get("live", {}).get("cursor")
        if cursor:
            cursors.append(cursor)
    if not cursors:
        return None
    return {"rx": min(c["rx"] for c in cursors), "id": min(c["id"] for c in cursors)}


def rate_cap():
    """Events a second one live connection is sent at most (the admin's runtime setting)."""
    from collector.models import RuntimeSettings

    return RuntimeSettings.load().live_rate_cap
