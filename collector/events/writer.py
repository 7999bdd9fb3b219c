"""The one writer of the store.

`write_events` takes decoded rows and commits them in one transaction: COPY into a
staging table, then INSERT ... ON CONFLICT DO NOTHING into the day-partitioned events
table, and in the same statement the per-minute and hourly rollups and the topic list, counting
only the rows that were really new. Idempotent: writing the same messages again (a
redelivery after a crash between commit and ack) changes nothing. Each new row comes
back with its id (`row.id`), so what runs after the commit (the live tail) can name it.
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps

from collector.db import is_outage

EVENT_COLUMNS = [
    ("ts", "timestamptz"),
    ("received_at", "timestamptz"),
    ("broker_id", "int8"),
    ("subject", "text"),
    ("stream", "text"),
    ("seq", "int8"),
    ("headers", "jsonb"),
    ("raw", "bytea"),
    ("size", "int4"),
    ("truncated", "bool"),
    ("sha256", "bytea"),
    ("format", "text"),
    ("event_id", "text"),
    ("type", "text"),
    ("version", "text"),
    ("producer", "text"),
    ("key", "text"),
    ("trace_id", "text"),
    ("span_id", "text"),
    ("payload", "jsonb"),
    ("note", "text"),
]
_NAMES = ", ".join(name for name, _ in EVENT_COLUMNS)
_TYPES = [kind for _, kind in EVENT_COLUMNS]

STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS event_stage ON COMMIT DELETE ROWS AS
SELECT {_NAMES} FROM collector_event WITH NO DATA
"""

# One statement: new rows only feed the rollup and the topic list, so a replay is a no-op.
MERGE = f"""
WITH ins AS (
    INSERT INTO collector_event ({_NAMES})
    SELECT {_NAMES} FROM event_stage
    ON CONFLICT DO NOTHING
    RETURNING id, seq, ts, broker_id, subject, stream, coalesce(producer, '') AS producer,
              coalesce(type, '') AS type, coalesce(version, '') AS version, size, note IS NOT NULL AS bad
), rollup AS (
    INSERT INTO collector_eventrollup (minute, broker_id, subject, producer, type, version, count, bytes, errors)
    SELECT date_trunc('minute', ts), broker_id, subject, producer, type, version,
           count(*), sum(size), count(*) FILTER (WHERE bad)
    FROM ins GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (minute, broker_id, subject, producer, type, version) DO UPDATE
    SET count = collector_eventrollup.count + EXCLUDED.count,
        bytes = collector_eventrollup.bytes + EXCLUDED.bytes,
        errors = collector_eventrollup.errors + EXCLUDED.errors
    RETURNING 1
), hourly AS (
    INSERT INTO collector_eventhourrollup (hour, broker_id, subject, producer, type, version, count, bytes, errors)
    SELECT date_trunc('hour', ts), broker_id, subject, producer, type, version,
           count(*), sum(size), count(*) FILTER (WHERE bad)
    FROM ins GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (hour, broker_id, subject, producer, type, version) DO UPDATE
    SET count = collector_eventhourrollup.count + EXCLUDED.count,
        bytes = collector_eventhourrollup.bytes + EXCLUDED.bytes,
        errors = collector_eventhourrollup.errors + EXCLUDED.errors
    RETURNING 1
), topics AS (
    INSERT INTO collector_topic (broker_id, name, stream, best_effort, first_seen, last_seen)
    SELECT broker_id, subject, max(stream), max(stream) = '', min(ts), max(ts)
    FROM ins GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (broker_id, name) DO UPDATE
    SET last_seen = greatest(collector_topic.last_seen, EXCLUDED.last_seen),
        stream = CASE WHEN EXCLUDED.stream <> '' THEN EXCLUDED.stream ELSE collector_topic.stream END,
        best_effort = collector_topic.best_effort AND EXCLUDED.best_effort
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM rollup) + (SELECT count(*) FROM hourly),
       (SELECT count(*) FROM topics),
       (SELECT array_agg(id) FROM ins), (SELECT array_agg(stream) FROM ins), (SELECT array_agg(seq) FROM ins)
"""


@dataclass(slots=True)
class EventRow:
    """A message ready to store: what the broker gave plus what the decoder found."""

    ts: datetime
    received_at: datetime
    broker_id: int
    subject: str
    stream: str
    seq: int
    headers: dict | None
    raw: bytes
    size: int
    truncated: bool
    sha256: bytes | None
    format: str
    event_id: str | None = None
    type: str | None = None
    version: str | None = None
    producer: str | None = None
    key: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    payload: object = None
    note: str | None = None
    id: int | None = None  # set by write_events when this row was new (None: not stored yet, or a replay)

    def copy_tuple(self):
        return (
            self.ts, self.received_at, self.broker_id, self.subject, self.stream, self.seq,
            None if self.headers is None else Jsonb(self.headers), self.raw, self.size, self.truncated,
            self.sha256, self.format, self.event_id, self.type, self.version, self.producer, self.key,
            self.trace_id, self.span_id, None if self.payload is None else Jsonb(self.payload), self.note,
        )


def cap_payload(data, limit):
    """Keep at most `limit` bytes of a message; a longer one keeps its full size and hash."""
    if len(data) <= limit:
        return data, False, None
    return data[:limit], True, hashlib.sha256(data).digest()


def _dumps(value):
    """JSON for jsonb columns: orjson when it can (several times faster), else the json module
    (integers wider than 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


async def prepare(conn):
    """Per-connection setup: the staging table (temporary, so each connection has its own)."""
    set_json_dumps(_dumps, conn)
    async with conn.cursor() as cur:
        await cur.execute(STAGE)
    await conn.commit()


async def write_events(conn, rows, partitions):
    """Store `rows` in one transaction and commit. Returns how many were new, and sets
    `row.id` on each of those. Idempotent: a row already stored (same broker, stream,
    sequence and time) is skipped and keeps `id` None."""
    if not rows:
        return 0
    try:
        await partitions.ensure(conn, {row.ts.astimezone(timezone.utc).date() for row in rows})
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY event_stage ({_NAMES}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_TYPES)
                for row in rows:
                    await copy.write_row(row.copy_tuple())
            # Binary results: the three arrays of a 5,000-row batch parse several times faster.
            await cur.execute(MERGE, binary=True)
            inserted, _, _, ids, streams, seqs = await cur.fetchone()
        await conn.commit()
    except BaseException:
        await _rollback_quietly(conn)
        raise
    if inserted:
        _name_new_rows(rows, ids, streams, seqs)
    return inserted


async def write_each(conn, rows, partitions):
    """Store `rows` one transaction each, for a batch the database refused. A row refused
    alone is stored again with less, the reason in its note: first without its decoded
    fields, then with only what the broker gave. Returns (how many were new, [(row, error)]
    for rows refused even so). A database outage is raised for the caller to wait out.
    Idempotent."""
    inserted, refused = 0, []
    for row in rows:
        error = None
        for strip in (None, _without_decoded_fields, _as_delivered):
            if strip is not None:
                strip(row, error)
            try:
                inserted += await write_events(conn, [row], partitions)
                break
            except psycopg.Error as refusal:
                if is_outage(refusal):
                    raise
                error = refusal
        else:
            refused.append((row, error))
    return inserted, refused


def first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _without_decoded_fields(row, error):
    # Keep the message: its raw bytes with the reason, without the decoded fields.
    row.headers, row.payload = None, None
    row.note = f"decoded fields not storable: {first_line(error)}"


def _as_delivered(row, error):
    # Only what the broker gave (the subject with any NUL made visible), with the reason.
    row.event_id = row.type = row.version = row.producer = row.key = row.trace_id = row.span_id = None
    row.subject = row.subject.replace("\x00", "\ufffd")
    row.note = f"not storable with its decoded fields or headers: {first_line(error)}".replace("\x00", "\ufffd")


def _name_new_rows(rows, ids, streams, seqs):
    """Give each new row its id. RETURNING has no order, so rows are matched on (stream,
    sequence): one message of a stream (one broker per batch), and on the core tap a
    counter of the collector process. The broker time in the unique key only places
    the row in its partition."""
    found = dict(zip(zip(streams, seqs), ids))
    for row in rows:
        ident = found.get((row.stream, row.seq))
        if ident is not None:
            row.id = ident


async def _rollback_quietly(conn):
    try:
        await conn.rollback()
    except Exception:  # the connection itself may be gone; the caller reconnects
        pass
